# The grown backbones, defined once. The ImageNet-stage configs (configs/imagenet/) and the COCO configs
# (configs/coco/) that continue from them take the same entry, so a checkpoint of the ImageNet stage, passed through
# tools/extract_backbone.py, loads into its COCO config with nothing but the path:
#     model = dict(backbone=dict(_base_.scalenet_deit_s_24l, img_size=..., ...))
# Each entry holds what decides the checkpoint's tensors (arch, depth plan, adapters, gates, own norms); the task's
# config adds the rest (input size, output type, windows, drop path, init_cfg). The base configs they are merged into
# leave `adapter` out (a plain model says adapter=None itself). A checkpoint with another plan or adapter is refused
# at load with the --cfg-options that would match it.
# DeiT (12 layers) grown 2x and 3x with the paper's cyclic map g(p) = p mod 12
scalenet_deit_ti_24l = dict(
    type='ScaleNetViT', arch='deit-tiny', depth=24, mapping='cyclic',
    adapter=dict(type='ParallelAdapter', bottleneck=16, sites=('attn', 'mlp')),
    function_preserving=False, unshared=())
scalenet_deit_s_24l = dict(scalenet_deit_ti_24l, arch='deit-small')
scalenet_deit_b_24l = dict(scalenet_deit_ti_24l, arch='deit-base')
scalenet_deit_s_36l = dict(scalenet_deit_s_24l, depth=36)
# LoRA per position instead of parallel adapters (rank 8, alpha 16 on qkv, proj, fc1, fc2): mergeable, so a trained
# model exports to a plain timm ViT of depth 24 (tools/export.py)
scalenet_deit_s_24l_lora = dict(scalenet_deit_s_24l, adapter=dict(type='LoRA', rank=8, alpha=16.0))
# The paper's foil, progressive growth: the same 24 positions from independent copies of the 12 pretrained layers
# (growth='copy': position p stores its own copy of layer p mod 12, no sharing, no adapters; twice the parameters).
# 'copy_zero' instead zeroes the output projections of the inserted copies (the model starts as the pretrained one).
progressive_deit_s_24l = dict(scalenet_deit_s_24l, growth='copy', adapter=None)

# The embedded demo (configs/demo/): the digits ViT of depth L = 4 grown to 2L = 8 (mmscalenet.demo.DEMO_ARCH)
digits_scalenet_8l = dict(
    type='ScaleNetViT', arch=dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0), depth=8,
    mapping='cyclic', adapter=dict(type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')),
    function_preserving=False, unshared=())
# ... and its progressive foil: the same 8 positions from independent copies of the 4 base layers
digits_progressive_8l = dict(digits_scalenet_8l, growth='copy', adapter=None)

# Swin-T (stage depths 2, 2, 6, 2) grown to Swin-S's depths (2, 2, 18, 2): configs/imagenet/ and configs/coco/ (*swin*)
scalenet_swin_t_s_depth = dict(
    type='ScaleNetSwin', arch='swin-tiny', depths=(2, 2, 18, 2), mapping='cyclic',
    adapter=dict(type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')), unshared=('rel_pos',))
# ... and its progressive foil (a Swin-S whose blocks start as copies of Swin-T's)
progressive_swin_t_s_depth = dict(scalenet_swin_t_s_depth, growth='copy', adapter=None)
