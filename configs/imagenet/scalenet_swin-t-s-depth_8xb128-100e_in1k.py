# ScaleNet-Swin-T@S: timm's pretrained Swin-T (stage depths 2, 2, 6, 2) grown to Swin-S's depths (2, 2, 18, 2)
# (cyclic map per stage, shared blocks, per-position parallel adapters and bias tables), trained 100 epochs on
# ImageNet-1K with Swin's recipe: AdamW, lr 1e-3 at a total batch of 1024 (8 GPUs x 128), weight decay 0.05,
# drop path 0.3 (Swin-S's rate, for the S depth), label smoothing 0.1, RandAugment, Mixup 0.8 / CutMix 1.0, random
# erasing 0.25, gradient clipping 5. Reference: Swin-S from scratch, 300 epochs (swin-s_8xb128-300e_in1k.py):
# 83.0 % top-1 (Swin paper); Swin-T 81.2 %. No run of this config has been made yet.
# Another pretrained file (Microsoft's swin_tiny_patch4_window7_224.pth, an mmpretrain checkpoint):
#   --cfg-options model.init_cfg.checkpoint=/path/to/file.pth
# The classifier (head, label smoothing, DeiT's random erasing and Mixup / CutMix) is ScaleNetClassifier's of
# ../_base_/models/scalenet_deit_cls.py with its ViT backbone replaced by the grown Swin.
_base_ = [
    '../_base_/models/scalenet_deit_cls.py',
    '../_base_/models/scalenet_backbones.py',
    '../_base_/datasets/imagenet_deit.py',
    '../_base_/schedules/deit_adamw_100e.py',   # lr 5e-4 x batch / 512 = Swin's 1e-3 at 1024, wd 0.05
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(
        _base_.scalenet_swin_t_s_depth,   # the entry the COCO configs use too
        _delete_=True,
        img_size=224,
        drop_path_rate=0.3,
        out_type='pooled'),
    # the checkpoint's 1000-class head (timm head.fc) is loaded as well
    init_cfg=dict(type='Pretrained', checkpoint='timm:swin_tiny_patch4_window7_224.ms_in1k'),
)
# Swin trains without DeiT's repeated augmentation
train_dataloader = dict(sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True))
# no weight decay on the relative-position bias tables (Swin's recipe); norms, biases and gates as in the base
# Swin's recipe clips gradients at 5 (DeiT's, which the schedule file follows, does not)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}),
                     clip_grad=dict(max_norm=5.0))
