# ScaleNet: timm's pretrained DeiT-Base (12 layers) grown to 24 layers (cyclic map, shared weights, parallel
# adapters), trained 100 epochs on ImageNet-1K. Paper reference (DeiT-S-24L): 81.13 % top-1 vs 79.31 % for
# 24-layer model trained from scratch for 300 epochs (deit-b-24l_8xb128-300e_in1k.py).
# Paper: DeiT-B grown 2x is 7.42 points above the same depth from scratch, with a third of the epochs.
# Another pretrained file: --cfg-options model.init_cfg.checkpoint=/path/to/deit_base_patch16_224.pth
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_100e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(arch='deit-base', depth=24),
    # the checkpoint's 1000-class head is loaded as well
    init_cfg=dict(type='Pretrained', checkpoint='timm:deit_base_patch16_224.fb_in1k'),
)
