# ViTDet Mask R-CNN, LSJ 1024, 100 epochs on COCO (the recipe of mmdet's projects/ViTDet lsj-100e config and
# detectron2's mask_rcnn_vitdet_b_100ep), with a ScaleNetViT backbone, ScaleNetSimpleFPN and the sharing-aware
# layer-decay constructor. The configs next to this folder choose the backbone (DeiT-S/B, plain or grown).
#
# Batch: 64 images = 16 GPUs x 4 (`tools/dist_train.sh CONFIG 16`, or 8 GPUs x 8 with
# `--cfg-options train_dataloader.batch_size=8`). AMP on; CPU runs need `optim_wrapper.type=OptimWrapper`.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='ScaleNetLN2d', requires_grad=True)

model = dict(
    # Test images are resized to 1024 (long side) and padded here to 1024x1024, so the network sees the same grid
    # as in training. Padding in the data preprocessor (not a `Pad` transform) keeps `img_shape` the real image
    # size, which also avoids mmdet's CPU mask-paste crash on boxes outside the image.
    data_preprocessor=dict(
        pad_size_divisor=1024,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='ScaleNetViT',
        arch='deit-small',
        depth=12,               # plain configs add adapter=None, grown ones an entry of scalenet_backbones.py
        img_size=1024,          # ViTDet grid (64x64): the checkpoint's 14x14 position embedding is resized at load,
                                # global positions' rel-pos tables are sized for 64 (windows: 14)
        patch_size=16,
        drop_path_rate=0.1,
        out_type='featmap',
        window_size=14,
        global_indices=None,    # 4 global positions spread over the (grown) depth, the last included
        use_rel_pos=True,
        with_cp=False,          # True saves activation memory (24-layer models at 1024 px)
        init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k')),
    neck=dict(
        _delete_=True,
        type='ScaleNetSimpleFPN',
        backbone_channel=384,
        out_channels=256,
        num_outs=5,
        scale_factors=(4, 2, 1, 0.5),
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# ---- data: large-scale jitter ----------------------------------------------------------------------------------
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size, recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator

# ---- optimisation: AdamW 1e-4, wd 0.1, layer decay 0.7 (over the base depth for grown backbones) ---------------
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='ScaleNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.7),   # over the backbone's depth, read from the model
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))

# 100 ep = 184375 iters * 64 images/iter / 118000 images/ep
max_iters = 184375
interval = 5000
dynamic_intervals = [(max_iters // interval * interval + 1, max_iters)]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[163889, 177546],  # 88 and 96 epochs
         gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=dynamic_intervals)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, save_last=True, interval=interval, max_keep_ckpts=5),
    # mmengine loads checkpoints with weights_only=True and writes them atomically while the runner runs
    safe_io=dict(type='SafeCheckpointIOHook'),
    # every checkpoint carries the ScaleNet metadata (export / extract_backbone need no --config), mmdet's tools too
    scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
    # one training run per work dir, mmdet's tools too (the lock tools/train.py takes)
    work_dir_lock=dict(type='WorkDirLockHook'))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
# Total batch 64; `tools/train.py --auto-scale-lr` rescales the lr for another total batch.
auto_scale_lr = dict(enable=False, base_batch_size=64)
