# ScaleNet: timm's pretrained DeiT-Tiny (12 layers) grown to 24 layers (cyclic map, shared weights, parallel
# adapters), trained 100 epochs on ImageNet-1K. Paper reference (DeiT-S-24L): 81.13 % top-1 vs 79.31 % for the
# same-depth model trained from scratch for 300 epochs (deit-ti-24l_8xb128-300e_in1k.py).
# Paper (secondary report): DeiT-Ti grown, 76.46 % top-1 at 6.45 M parameters.
# Another pretrained file: --cfg-options model.init_cfg.checkpoint=/path/to/deit_tiny_patch16_224.pth
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_100e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(arch='deit-tiny', depth=24),
    # the checkpoint's 1000-class head is loaded as well
    init_cfg=dict(type='Pretrained', checkpoint='timm:deit_tiny_patch16_224.fb_in1k'),
)
