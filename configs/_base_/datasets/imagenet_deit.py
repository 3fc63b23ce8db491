# ImageNet-1K with DeiT's augmentation (timm): RandomResizedCrop 224 (bicubic), flip, RandAugment
# rand-m9-mstd0.5-inc1; random erasing 0.25 and Mixup 0.8 / CutMix 1.0 run batched in the model's data
# preprocessor (see _base_/models/scalenet_deit_cls.py). Repeated augmentation (3 repeats) as in DeiT.
#
# Layouts: data/imagenet/{train,val}/<wnid>/*.JPEG (folder), or a list file of "<relative path> <label>" lines:
#   --cfg-options train_dataloader.dataset.ann_file=meta/train.txt val_dataloader.dataset.ann_file=meta/val.txt
dataset_type = 'ScaleNetImageNet'
data_root = 'data/imagenet'

train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmClsTransform', input_size=224, is_training=True, auto_augment='rand-m9-mstd0.5-inc1',
         interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmClsTransform', input_size=224, is_training=False, interpolation='bicubic', crop_pct=0.875),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=128,  # per GPU
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,  # Mixup needs even batches
    # DeiT's repeated augmentation; for plain shuffling use dict(type='DefaultSampler', shuffle=True)
    sampler=dict(type='ScaleNetRepeatAugSampler', num_repeats=3, shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
