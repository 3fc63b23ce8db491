# The detector side of ScaleNet-Swin-T@S, shared by mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py and
# mask-rcnn_scalenet-swin-t-s-depth_fpn_ms-crop-3x_coco.py: the grown backbone entry the ImageNet stage uses too
# (`scalenet_swin_t_s_depth` of ../../_base_/models/scalenet_backbones.py) with mmdet's Swin-T Mask R-CNN settings
# (224-px pretraining windows, drop path 0.2, the four stage maps for the FPN, no activation checkpointing).
# The backbone continues from the ImageNet stage (../scalenet_swin-t-s-depth_8xb128-100e_in1k.py, then
# tools/extract_backbone.py on its work dir, which writes backbone.pth there). From Microsoft's Swin-T file (the one
# mmdet's Swin-T configs load) grown at load time instead, which the load logs as a warning:
#   --cfg-options model.backbone.init_cfg.checkpoint=https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
# A variable, not `model`: the configs also inherit mmdet's Swin-T config and replace its backbone with this.
_base_ = ['../../_base_/models/scalenet_backbones.py']
imagenet_stage = 'work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k/backbone.pth'
scalenet_swin_t_s_depth_mask_rcnn = dict(
    backbone=dict(
        _base_.scalenet_swin_t_s_depth,
        _delete_=True,
        img_size=224,
        drop_path_rate=0.2,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=imagenet_stage)),
    neck=dict(in_channels=[96, 192, 384, 768]))
