# Baseline: an ordinary (untied, no adapters) 24-layer DeiT-Small
# trained from scratch for 300 epochs with the same recipe as scalenet_deit-s-24l_8xb128-100e_in1k.py.
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_300e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=384, num_layers=24, num_heads=6, mlp_ratio=4.0),
        depth=None,
        adapter=None),
    init_cfg=None,
)
