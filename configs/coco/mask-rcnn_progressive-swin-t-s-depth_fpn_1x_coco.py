# The foil of mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py: the same Mask R-CNN 1x recipe and starting point
# (the ImageNet stage's backbone.pth), with the progressive-growth backbone (`progressive_swin_t_s_depth`: every
# position its own copy of a Swin-T block) instead of ScaleNet's shared blocks. Its ImageNet stage:
#   python tools/train.py configs/imagenet/progressive_swin-t-s-depth_8xb128-100e_in1k.py
#   python tools/extract_backbone.py work_dirs/progressive_swin-t-s-depth_8xb128-100e_in1k
# No run of this config has been made.
_base_ = ['./mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py']
model = dict(
    backbone=dict(
        _base_.progressive_swin_t_s_depth,   # over the ScaleNet config's backbone (no adapters)
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/progressive_swin-t-s-depth_8xb128-100e_in1k/backbone.pth')))
