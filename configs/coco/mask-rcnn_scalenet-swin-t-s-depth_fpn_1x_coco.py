# Mask R-CNN FPN 1x on COCO with ScaleNet-Swin-T@S: Swin-T grown to Swin-S's stage depths (2, 2, 18, 2) with shared
# blocks, per-position parallel adapters and bias tables (Swin-T's parameters + 0.5 M). Everything else is mmdet's
# Swin-T 1x recipe (mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py, next to this file): AdamW lr 1e-4, wd 0.05, no decay on
# norms and relative-position tables, 12 epochs, batch 16 (8 GPUs x 2).
# mmdet model zoo, same schedule: Swin-T 1x box AP 42.7 / mask AP 39.3. No run of this config has been made yet.
# Backbone (shared with the 3x config): _base_/scalenet-swin-t-s-depth_mask-rcnn.py. It continues from the ImageNet
# stage (configs/imagenet/scalenet_swin-t-s-depth_8xb128-100e_in1k.py, then tools/extract_backbone.py on its work dir):
# work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k/backbone.pth. From Microsoft's Swin-T file (the one mmdet's
# Swin-T config loads) grown at load time instead (logged as a warning):
#   --cfg-options model.backbone.init_cfg.checkpoint=https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', './_base_/scalenet-swin-t-s-depth_mask-rcnn.py']
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
model = _base_.scalenet_swin_t_s_depth_mask_rcnn
# weights_only loads, atomic writes, the ScaleNet metadata in every checkpoint, one training run per work dir
# (mmdet's tools too)
default_hooks = dict(safe_io=dict(type='SafeCheckpointIOHook'), scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
                     work_dir_lock=dict(type='WorkDirLockHook'))
