# Baseline: an ordinary (untied, no adapters) 24-layer DeiT-Base trained from scratch for 300 epochs with the same
# recipe as scalenet_deit-b-24l_8xb128-100e_in1k.py; everything but the width is deit-s-24l_8xb128-300e_in1k.py.
_base_ = './deit-s-24l_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=768, num_layers=24, num_heads=12, mlp_ratio=4.0)))
