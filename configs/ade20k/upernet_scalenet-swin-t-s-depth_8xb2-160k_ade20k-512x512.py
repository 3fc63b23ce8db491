# UperNet on ADE20K (512x512, 160k iterations, batch 16 = 8 GPUs x 2) with ScaleNet-Swin-T@S: Swin-T grown to
# Swin-S's stage depths (2, 2, 18, 2) with shared blocks and per-position adapters and bias tables, the backbone of
# the Swin ImageNet stage (configs/imagenet/scalenet_swin-t-s-depth_8xb128-100e_in1k.py):
#   python tools/train.py configs/imagenet/scalenet_swin-t-s-depth_8xb128-100e_in1k.py
#   python tools/extract_backbone.py work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k   # -> .../backbone.pth
# Everything except the backbone is mmseg's Swin-T UperNet recipe (inherited; mmseg zoo: Swin-T 44.41, Swin-S 47.72
# mIoU single-scale: configs swin-*_upernet_* next to this file). Starting from Microsoft's Swin-T file grown at load
# instead (no ImageNet stage): --cfg-options model.backbone.init_cfg.checkpoint=<swin_tiny_patch4_window7_224.pth>
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/scalenet_backbones.py',
    './_base_/ade20k_checked_pipeline.py',
]
default_scope = 'mmseg'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.scalenet_swin_t_s_depth,
        _delete_=True,
        img_size=224,           # the pretraining windows (7x7); any input size runs
        drop_path_rate=0.3,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k/backbone.pth')))
train_dataloader = dict(dataset=dict(pipeline=_base_.ade20k_checked_train_pipeline))
# weights_only loads, atomic writes, the ScaleNet metadata in every checkpoint, one training run per work dir
# (mmseg's tools too)
default_hooks = dict(safe_io=dict(type='SafeCheckpointIOHook'), scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
                     work_dir_lock=dict(type='WorkDirLockHook'))
