# Baseline next to mask-rcnn_scalenet-swin-t-s-depth_fpn_ms-crop-3x_coco.py: mmdet's own Swin-S Mask R-CNN FPN 3x
# (multi-scale + crop, AMP), unchanged: the model ScaleNet-Swin-T@S has the depths of. mmdet model zoo: box AP
# 48.2 / mask AP 43.2 (69.1 M parameters).
_base_ = 'mmdet::swin/mask-rcnn_swin-s-p4-w7_fpn_amp-ms-crop-3x_coco.py'
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
