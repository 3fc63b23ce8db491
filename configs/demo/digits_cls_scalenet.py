# Demo, step 2: the depth-4 model of digits_cls_base.py grown by ScaleNet to depth 8 (cyclic map, shared weights,
# parallel adapters) and trained for a third of the epochs, with the same recipe.
# python tools/train.py configs/demo/digits_cls_scalenet.py \
#     --cfg-options model.init_cfg.checkpoint=work_dirs/demo/classification/base_backbone.pth
_base_ = [
    '../_base_/models/digits_vit_cls.py',
    '../_base_/models/scalenet_backbones.py',
    '../_base_/datasets/digits_cls.py',
    '../_base_/schedules/digits_cls_cpu.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=_base_.digits_scalenet_8l,   # the entry digits_det_scalenet.py uses too
    # the base run's backbone + head, in the ScaleNet checkpoint format (written by mmscalenet.demo.classification;
    # tools/extract_backbone.py makes one from a run checkpoint)
    init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/base_backbone.pth'),
)
max_epochs = 6
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
