# Embedded semantic-segmentation stand-in (CPU, no downloads): digit scenes (mmscalenet/demo/digit_scenes.py) as
# class maps, 0 = background and 1..10 = the digits '0'..'9' (the union of the scene's exact instance masks),
# segmented by mmseg's EncoderDecoder: the classification half's ViT giving its stride-4 feature map
# (out_type='featmap', as in digits_det_*.py) and a light FCN head (one 3x3 conv). Backbone = the depth-L
# "pretrained" ViT. The scenes are the ones on which that pretraining transfers within the demo's budget: 32x32
# plain-style scenes (dark noisy background) holding one digit drawn at 28 px, the grid and scale the classification
# half trained on (mmscalenet/demo/segmentation.py says what larger scenes gave).
# `python -m mmscalenet.demo.segmentation` (or `make demo`) writes the scenes, fills in the paths and runs this
# config and digits_seg_<row>.py for every row of mmscalenet.demo.ROWS that has one; by hand:
#   python -m mmscalenet.demo.segmentation --write-scenes work_dirs/demo/segmentation/scenes
#   python tools/train.py configs/demo/digits_seg_base.py
# A row is added by a config digits_seg_<row>.py (_base_ = './digits_seg_base.py', only the backbone changed).
_base_ = ['mmseg::_base_/default_runtime.py']
default_scope = 'mmseg'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

classes = ('background', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')
# background black (left dark in overlays), the digits in mmseg's default-like distinct colours
palette = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
           [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]]
data_root = 'work_dirs/demo/segmentation/scenes/'
scene_size = 32   # mmscalenet.demo.segmentation.CANVAS
norm_cfg = dict(type='ScaleNetLN2d', requires_grad=True)

model = dict(
    type='EncoderDecoder',
    # the classification half normalises RGB with mean = std = 127.5
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True,
                           pad_val=0, seg_pad_val=255, size=(scene_size, scene_size)),
    backbone=dict(
        type='ScaleNetViT',
        # the classification half's ViT (depth L = 4)
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0),
        depth=4,
        adapter=None,
        img_size=32,            # pretraining grid of the classification half: 8x8 tokens of 4x4 pixels
        patch_size=4,           # stride-4 feature map: 8x8 tokens on a 32x32 scene
        drop_path_rate=0.05,
        out_type='featmap',
        window_size=0,          # global attention at every position, as in digits_det_base.py
        global_indices=None,
        use_rel_pos=False,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/base_backbone.pth')),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=0,
        channels=64,
        num_convs=1,
        kernel_size=3,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=len(classes),
        norm_cfg=norm_cfg,
        align_corners=False,
        # background (about 80 % of the pixels) weighted down: unweighted, every backbone stayed a constant
        # background predictor for the first hundreds of iterations
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=[0.3] + [1.0] * 10)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# ---- data ---------------------------------------------------------------------------------------------------------
dataset_type = 'BaseSegDataset'
metainfo = dict(classes=classes, palette=palette)
# No flips: a mirrored digit is another digit (or none).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),   # reduce_zero_label=False comes from the dataset
    dict(type='ScaleNetCheckSegLabels', num_classes=len(classes)),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),   # reduce_zero_label=False comes from the dataset
    dict(type='PackSegInputs'),
]
_data = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.png', seg_map_suffix='.png',
             reduce_zero_label=False)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),   # iteration-based training
    dataset=dict(_data, data_prefix=dict(img_path='img/train', seg_map_path='ann/train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_data, data_prefix=dict(img_path='img/val', seg_map_path='ann/val'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# ---- schedule (CPU: plain OptimWrapper) ---------------------------------------------------------------------------
max_iters = 400
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='ScaleNetLayerDecayOptimizerConstructor',
    # num_layers is read from the backbone. shared_lr='per_use': a tensor that k positions run trains at 1/k of its
    # decayed lr (a no-op for the rows without shared tensors); on three seeds it lifts the grown row from last
    # (31.9 mIoU) to level with the foil (48.9 vs 50.3) here, docs/detection_transfer.md section 4.
    paramwise_cfg=dict(decay_rate=0.9, shared_lr='per_use'),
    optimizer=dict(type='AdamW', lr=4e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=max_iters, eta_min_ratio=0.02),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# ---- runtime (mmseg's default_runtime.py, and:) ------------------------------------------------------------------
visualizer = dict(alpha=0.6)
log_processor = dict(window_size=50)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
    safe_io=dict(type='SafeCheckpointIOHook'),   # weights_only loads, atomic writes while the runner runs
    scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),   # the ScaleNet metadata in every checkpoint
    work_dir_lock=dict(type='WorkDirLockHook'))   # one training run per work dir (the lock tools/train.py takes)
randomness = dict(seed=0)
