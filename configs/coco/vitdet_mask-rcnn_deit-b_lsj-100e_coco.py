# Baseline: plain 12-layer DeiT-B (timm weights), no sharing, no adapters (ViTDet-B's recipe); otherwise
# vitdet_mask-rcnn_deit-s_lsj-100e_coco.py.
_base_ = './vitdet_mask-rcnn_deit-s_lsj-100e_coco.py'

model = dict(
    backbone=dict(arch='deit-base', init_cfg=dict(checkpoint='timm:deit_base_patch16_224.fb_in1k')),
    neck=dict(backbone_channel=768))
