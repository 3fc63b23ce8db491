# Mask R-CNN FPN 3x (multi-scale + crop training, 36 epochs) on COCO with ScaleNet-Swin-T@S (Swin-T grown to
# Swin-S's depths 2, 2, 18, 2; see mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py). mmdet's Swin 3x recipe
# (mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py) with the backbone replaced by the one of the 1x config
# (_base_/scalenet-swin-t-s-depth_mask-rcnn.py).
# mmdet model zoo, same schedule: Swin-T 3x box AP 46.0 / mask AP 41.6; Swin-S 3x 48.2 / 43.2 (the question: how
# close does Swin-T@S, at Swin-T's parameters, come to Swin-S?). No run of this config has been made yet.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', './_base_/scalenet-swin-t-s-depth_mask-rcnn.py']
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
model = _base_.scalenet_swin_t_s_depth_mask_rcnn
# weights_only loads, atomic writes, the ScaleNet metadata in every checkpoint, one training run per work dir
# (mmdet's tools too)
default_hooks = dict(safe_io=dict(type='SafeCheckpointIOHook'), scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
                     work_dir_lock=dict(type='WorkDirLockHook'))
