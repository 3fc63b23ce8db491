# Mask R-CNN with a classic FPN on a grown ViT (Li et al., "Benchmarking detection transfer learning with vision
# transformers"): DeiT-S grown to 24 positions; the maps of positions 6, 12, 18 and 24 are rescaled to strides
# 4, 8, 16, 32 by ScaleNetMultiLevelNeck and fed to mmdet's FPN. mmdet's 1x schedule and data (1333x800, flip),
# with AdamW + sharing-aware layer decay instead of SGD. Batch 16 = 8 GPUs x 2.
# The backbone continues from the ImageNet stage (configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py, then
# tools/extract_backbone.py on its work dir); from timm's DeiT-S grown at load instead:
#   --cfg-options model.backbone.init_cfg.checkpoint=timm:deit_small_patch16_224.fb_in1k
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/models/scalenet_backbones.py',
]
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.scalenet_deit_s_24l,
        _delete_=True,
        img_size=1344,          # the training grid's long side (1333 px, padded to 1344 = 84 tokens): position and
        patch_size=16,          # global rel-pos tables sized for it, not stretched from 224 px at every forward
        drop_path_rate=0.2,
        out_type='featmap',
        out_indices=(5, 11, 17, 23),
        window_size=14,
        global_indices=(5, 11, 17, 23),
        use_rel_pos=True,
        with_cp=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k/backbone.pth')),
    neck=dict(
        _delete_=True,
        type='ScaleNetMultiLevelNeck',
        in_channels=384,
        scale_factors=(4, 2, 1, 0.5),
        norm_cfg=dict(type='ScaleNetLN2d', requires_grad=True),
        fpn=dict(type='FPN', out_channels=256, num_outs=5)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='ScaleNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.7),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))
# mmengine loads checkpoints with weights_only=True and writes them atomically while the runner runs; every
# checkpoint carries the ScaleNet metadata; one training run per work dir (mmdet's own tools too)
default_hooks = dict(safe_io=dict(type='SafeCheckpointIOHook'), scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
                     work_dir_lock=dict(type='WorkDirLockHook'))
