# ScaleNet: timm's pretrained DeiT-Tiny (12 layers) grown to 24 layers, trained 100 epochs on ImageNet-1K; the
# recipe of scalenet_deit-s-24l_8xb128-100e_in1k.py. Baseline: deit-ti-24l_8xb128-300e_in1k.py.
# Paper (secondary report): DeiT-Ti grown, 76.46 % top-1 at 6.45 M parameters.
# Another pretrained file: --cfg-options model.init_cfg.checkpoint=/path/to/deit_tiny_patch16_224.pth
_base_ = './scalenet_deit-s-24l_8xb128-100e_in1k.py'
model = dict(
    backbone=_base_.scalenet_deit_ti_24l,
    init_cfg=dict(checkpoint='timm:deit_tiny_patch16_224.fb_in1k'),
)
