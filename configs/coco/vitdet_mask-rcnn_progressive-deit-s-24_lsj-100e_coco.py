# The foil of vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py: the same ViTDet Mask R-CNN, recipe and starting
# point (the ImageNet stage's backbone.pth), with the progressive-growth backbone (24 independent copies of DeiT-S's
# 12 layers, `progressive_deit_s_24l`) instead of ScaleNet's shared layers. Its ImageNet stage:
#   python tools/train.py configs/imagenet/progressive_deit-s-24l_8xb128-100e_in1k.py
#   python tools/extract_backbone.py work_dirs/progressive_deit-s-24l_8xb128-100e_in1k  # -> .../backbone.pth
# Layer decay is that of a plain 24-layer ViT (each copy its own depth). No run of this config has been made.
_base_ = ['./vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py']
model = dict(
    backbone=dict(
        _base_.progressive_deit_s_24l,   # over the ScaleNet config's backbone (no adapters)
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/progressive_deit-s-24l_8xb128-100e_in1k/backbone.pth')))
