# ScaleNetClassifier with DeiT's training-time regularisation: random erasing 0.25 (pixel mode), Mixup 0.8,
# CutMix 1.0 (switch prob 0.5), label smoothing 0.1, drop path 0.1. The grown configs merge an entry of
# scalenet_backbones.py (arch, plan, adapters) into `backbone`, the plain ones set depth=None, adapter=None; both set
# init_cfg (the pretrained checkpoint, including the 1000-class head) where they start from one.
model = dict(
    type='ScaleNetClassifier',
    backbone=dict(
        type='ScaleNetViT',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token',
    ),
    num_classes=1000,
    label_smoothing=0.1,
    data_preprocessor=dict(
        type='ScaleNetClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        random_erasing=dict(prob=0.25, mode='pixel', max_count=1),
        mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
    ),
    # init_cfg=dict(type='Pretrained', checkpoint=...) is set by the configs that start from pretrained weights
)
