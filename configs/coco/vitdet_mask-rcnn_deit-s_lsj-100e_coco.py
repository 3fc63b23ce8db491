# Baseline: plain 12-layer DeiT-S (timm weights), no sharing, no adapters. Compare with
# vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py.
_base_ = './_base_/vitdet_mask-rcnn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='deit-small',
        depth=12,
        adapter=None,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k')),
    neck=dict(backbone_channel=384))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7))
