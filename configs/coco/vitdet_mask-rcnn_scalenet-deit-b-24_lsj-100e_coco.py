# ScaleNet: DeiT-B (12 layers) grown to 24 positions; otherwise vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py.
# Override the checkpoint with an expanded or ImageNet-stage one via
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'

model = dict(
    backbone=dict(arch='deit-base', init_cfg=dict(checkpoint='timm:deit_base_patch16_224.fb_in1k')),
    neck=dict(backbone_channel=768))
