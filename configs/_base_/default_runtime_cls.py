# Runtime of the classification (ImageNet-stage) configs. Everything is registered in mmdet's registries.
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keeps the last 3 epochs and the best one by val top-1 (best_accuracy_top1_epoch_*.pth)
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # mmengine loads checkpoints with weights_only=True and writes them atomically while the runner runs
    safe_io=dict(type='SafeCheckpointIOHook'),
    # every checkpoint carries the ScaleNet metadata (export / extract_backbone need no --config), mmdet's tools too
    scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
    # one training run per work dir, mmdet's tools too (the lock tools/train.py takes)
    work_dir_lock=dict(type='WorkDirLockHook'),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
# draws the image with its class (mmdet's browse_dataset.py, mmscalenet.visualization)
visualizer = dict(type='ScaleNetClsVisualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
