# Baseline for scalenet_swin-t-s-depth_8xb128-100e_in1k.py: an ordinary Swin-S (depths 2, 2, 18, 2, untied, no
# adapters) trained from scratch for 300 epochs with Swin's recipe (20 warm-up epochs, cosine to 1e-5, drop path
# 0.3). Swin paper: 83.0 % top-1 at 50 M parameters.
_base_ = [
    './scalenet_swin-t-s-depth_8xb128-100e_in1k.py',
]
model = dict(
    backbone=dict(arch='swin-small', depths=None, adapter=None),
    init_cfg=None,
)
max_epochs = 300
warmup_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
