# UperNet on ADE20K (512x512, 160k iterations, batch 16 = 8 GPUs x 2, AdamW 6e-5, poly lr) with ScaleNet: DeiT-S
# (12 layers) grown to 24 positions, the backbone of the ImageNet stage (configs/imagenet/scalenet_deit-s-24l_*):
#   python tools/train.py configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py
#   python tools/extract_backbone.py work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k   # -> .../backbone.pth
#   bash tools/dist_train.sh configs/ade20k/upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py 8
# Everything except the backbone is mmseg's DeiT-S + MultiLevelNeck recipe (inherited below; mmseg zoo: 43.82 mIoU
# single-scale with mmseg's ViT). The four maps for the neck come from positions spread over the grown depth, as
# mmseg takes (2, 5, 8, 11) of 12. Starting from timm's DeiT-S grown at load instead (no ImageNet stage):
#   --cfg-options model.backbone.init_cfg.checkpoint=timm:deit_small_patch16_224.fb_in1k
_base_ = [
    'mmseg::vit/vit_deit-s16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/scalenet_backbones.py',
    './_base_/ade20k_checked_pipeline.py',
]
default_scope = 'mmseg'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)

model = dict(
    pretrained=None,    # mmseg's deit-s file; the backbone's init_cfg says where its weights come from
    backbone=dict(
        _base_.scalenet_deit_s_24l,
        _delete_=True,
        img_size=512,           # the 14x14 position embedding of the checkpoint is resized at load (32x32)
        patch_size=16,
        drop_path_rate=0.1,
        out_type='featmap',
        out_indices=(5, 11, 17, 23),
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k/backbone.pth')))
train_dataloader = dict(dataset=dict(pipeline=_base_.ade20k_checked_train_pipeline))
# weights_only loads, atomic writes, the ScaleNet metadata in every checkpoint, one training run per work dir
# (mmseg's tools too)
default_hooks = dict(safe_io=dict(type='SafeCheckpointIOHook'), scalenet_meta=dict(type='ScaleNetCheckpointMetaHook'),
                     work_dir_lock=dict(type='WorkDirLockHook'))
