# ScaleNet 3x: timm's pretrained DeiT-Small (12 layers) grown to 36 layers (cyclic map: every layer used 3 times),
# trained 100 epochs on ImageNet-1K; otherwise scalenet_deit-s-24l_8xb128-100e_in1k.py.
_base_ = './scalenet_deit-s-24l_8xb128-100e_in1k.py'
model = dict(backbone=_base_.scalenet_deit_s_36l)
