# The foil of scalenet_swin-t-s-depth_8xb128-100e_in1k.py (same recipe, only the growth differs): timm's pretrained
# Swin-T (2, 2, 6, 2) grown to Swin-S's depths (2, 2, 18, 2) by progressive growth, every position of a stage its
# own copy of the Swin-T block the cyclic map gives it (no sharing, no adapters: a Swin-S's parameters).
# `--cfg-options model.backbone.growth=copy_zero` zeroes the inserted copies' output projections (function
# preserving). The backbone entry is `progressive_swin_t_s_depth` (../_base_/models/scalenet_backbones.py), which
# its COCO config (mask-rcnn_progressive-swin-t-s-depth_fpn_1x_coco.py) uses too. No run has been made.
_base_ = ['./scalenet_swin-t-s-depth_8xb128-100e_in1k.py']
model = dict(backbone=_base_.progressive_swin_t_s_depth)   # over the ScaleNet config's backbone (no adapters)
