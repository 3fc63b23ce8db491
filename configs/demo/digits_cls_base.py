# Demo, step 1 ("pretraining"): the small ViT of depth L = 4 trained on the digits from scratch.
# python tools/train.py configs/demo/digits_cls_base.py
_base_ = [
    '../_base_/models/digits_vit_cls.py',
    '../_base_/datasets/digits_cls.py',
    '../_base_/schedules/digits_cls_cpu.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(depth=None, adapter=None))
max_epochs = 18
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 2, eta_min=1e-5, by_epoch=True, begin=2, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None),
)
