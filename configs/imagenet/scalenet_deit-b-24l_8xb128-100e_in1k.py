# ScaleNet: timm's pretrained DeiT-Base (12 layers) grown to 24 layers, trained 100 epochs on ImageNet-1K; the
# recipe of scalenet_deit-s-24l_8xb128-100e_in1k.py. Baseline: deit-b-24l_8xb128-300e_in1k.py.
# Paper: DeiT-B grown 2x is 7.42 points above the same depth from scratch, with a third of the epochs.
# Another pretrained file: --cfg-options model.init_cfg.checkpoint=/path/to/deit_base_patch16_224.pth
_base_ = './scalenet_deit-s-24l_8xb128-100e_in1k.py'
model = dict(
    backbone=_base_.scalenet_deit_b_24l,
    init_cfg=dict(checkpoint='timm:deit_base_patch16_224.fb_in1k'),
)
