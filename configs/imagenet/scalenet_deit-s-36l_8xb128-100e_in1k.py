# ScaleNet 3x: timm's pretrained DeiT-Small (12 layers) grown to 36 layers (cyclic map: every layer used 3 times),
# trained 100 epochs on ImageNet-1K.
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_100e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(arch='deit-small', depth=36),
    init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k'),
)
