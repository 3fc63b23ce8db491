# Baseline next to mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py: mmdet's own Swin-T Mask R-CNN FPN 1x, unchanged.
# mmdet model zoo: box AP 42.7 / mask AP 39.3 (47.8 M parameters).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
