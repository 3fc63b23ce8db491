# ScaleNet: DeiT-B (12 layers) grown to 24 positions, after its ImageNet stage
# (configs/imagenet/scalenet_deit-b-24l_8xb128-100e_in1k.py, then tools/extract_backbone.py on its work dir);
# otherwise vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py. From timm's DeiT-B grown at load instead:
#   --cfg-options model.backbone.init_cfg.checkpoint=timm:deit_base_patch16_224.fb_in1k
_base_ = './vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        _base_.scalenet_deit_b_24l,
        init_cfg=dict(checkpoint='work_dirs/scalenet_deit-b-24l_8xb128-100e_in1k/backbone.pth')),
    neck=dict(backbone_channel=768))
