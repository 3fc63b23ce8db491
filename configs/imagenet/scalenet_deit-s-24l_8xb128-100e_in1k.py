# ScaleNet: timm's pretrained DeiT-Small (12 layers) grown to 24 layers (cyclic map, shared weights, parallel
# adapters), trained 100 epochs on ImageNet-1K. Paper reference (DeiT-S-24L): 81.13 % top-1 vs 79.31 % for the
# 24-layer model trained from scratch for 300 epochs (deit-s-24l_8xb128-300e_in1k.py).
# The backbone is `scalenet_deit_s_24l` of ../_base_/models/scalenet_backbones.py, the entry its COCO configs use.
# Another pretrained file: --cfg-options model.init_cfg.checkpoint=/path/to/deit_small_patch16_224.pth
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/models/scalenet_backbones.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_100e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=_base_.scalenet_deit_s_24l,
    # the checkpoint's 1000-class head is loaded as well
    init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k'),
)
