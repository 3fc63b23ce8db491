# Tiny synthetic-data ScaleNet classifier for the reliability tests (CPU, seconds per run).
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet', 'tests.configs.rel_tiny_modules'], allow_failed_imports=False)

model = dict(
    type='RelTinyClassifier',
    num_classes=4,
    backbone=dict(type='ScaleNetViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0), depth=4, mapping='cyclic',
                  adapter=dict(type='ParallelAdapter', bottleneck=4), img_size=32, patch_size=8,
                  drop_path_rate=0.0, with_cp=False, init_cfg=None))

train_dataloader = dict(batch_size=4, num_workers=0, collate_fn=dict(type='default_collate'),
                        sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
                        dataset=dict(type='RelSyntheticDataset', length=8, num_classes=4, img_size=32))
test_dataloader = dict(batch_size=4, num_workers=0, collate_fn=dict(type='default_collate'),
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='RelSyntheticDataset', length=8, num_classes=4, img_size=32, seed=1))
test_evaluator = dict(type='RelTinyAccuracy')
test_cfg = dict(type='TestLoop')

train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=100)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=3),
                   dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=4, eta_min=1e-5)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='RelKillSwitchHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'), dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, deterministic=True)
log_level = 'INFO'
load_from = None
resume = False
