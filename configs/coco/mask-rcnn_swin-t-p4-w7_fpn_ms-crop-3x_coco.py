# Baseline next to mask-rcnn_scalenet-swin-t-s-depth_fpn_ms-crop-3x_coco.py: mmdet's own Swin-T Mask R-CNN FPN 3x
# (multi-scale + crop), unchanged. mmdet model zoo: box AP 46.0 / mask AP 41.6.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
