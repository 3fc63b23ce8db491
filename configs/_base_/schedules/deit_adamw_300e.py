# DeiT's optimisation recipe for 300 epochs (the from-scratch baselines): deit_adamw_100e.py with the
# epoch-dependent parts redefined; warm-up, optimizer and lr scaling are inherited unchanged.
_base_ = './deit_adamw_100e.py'
max_epochs = 300
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
