# Embedded detection stand-in (CPU, no downloads): Mask R-CNN on digit scenes (mmscalenet/demo/digit_scenes.py,
# 96x96 cluttered canvases with one to five sklearn digits among distractor shapes), backbone = the depth-L
# "pretrained" ViT of the classification half.
# `python -m mmscalenet.demo.detection` (or `make demo`) generates the data, fills in the paths and runs this
# config and digits_det_scalenet.py; by hand:
#   python -m mmscalenet.demo.digit_scenes work_dirs/demo/detection/scenes
#   python tools/train.py configs/demo/digits_det_base.py
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

classes = ('0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
data_root = 'work_dirs/demo/detection/scenes/'
norm_cfg = dict(type='ScaleNetLN2d', requires_grad=True)
channels = 64

model = dict(
    # the classification half normalises RGB with mean = std = 127.5
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='ScaleNetViT',
        # mmscalenet.demo.DEMO_ARCH (depth L = 4)
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0),
        depth=4,
        adapter=None,
        img_size=32,            # pretraining grid of the classification half: 8x8 tokens of 4x4 pixels
        patch_size=4,           # stride-4 feature map: 24x24 tokens on a 96x96 scene
        drop_path_rate=0.05,
        out_type='featmap',
        window_size=0,          # global attention at every position (576 tokens are cheap), so the base and the
        global_indices=None,    # grown backbone see the same attention pattern
        use_rel_pos=False,      # a rel-pos bias forces the slow attention path on CPU at 1024 tokens
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/base_backbone.pth')),
    neck=dict(
        _delete_=True,
        type='ScaleNetSimpleFPN',
        backbone_channel=64,
        out_channels=channels,
        num_outs=3,
        scale_factors=(1, 0.5, 0.25),   # stride-4 map -> strides 4, 8, 16
        norm_cfg=norm_cfg),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        anchor_generator=dict(scales=[6], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels, featmap_strides=[4, 8, 16]),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=channels, featmap_strides=[4, 8, 16]),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(max_per_img=20)))

# ---- data ---------------------------------------------------------------------------------------------------------
dataset_type = 'CocoDataset'
metainfo = dict(classes=classes)
# No flips: a mirrored digit is another digit (or none). Mild scale jitter only.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=(96, 96), ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute', crop_size=(96, 96), recompute_bbox=True,
         allow_negative_crop=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(2, 2)),
    dict(type='PackDetInputs'),
]
# CPU: no fixed-size Pad here (the data preprocessor pads), see mmscalenet's integration notes.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),   # sets scale_factor (identity on 96x96 scenes)
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),   # iteration-based training
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# ---- schedule (CPU: plain OptimWrapper, AMP refuses CPU) --------------------------------------------------------
max_iters = 200
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ScaleNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9),   # num_layers is read from the backbone
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min_ratio=0.02),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    safe_io=dict(type='SafeCheckpointIOHook'),   # weights_only loads, atomic writes while the runner runs
    scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),   # the ScaleNet metadata in every checkpoint
    work_dir_lock=dict(type='WorkDirLockHook'))   # one training run per work dir (the lock tools/train.py takes)
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
randomness = dict(seed=0)
