# The embedded stand-in for ImageNet: scikit-learn's 1,797 handwritten digits upscaled to 32x32 RGB, fixed
# stratified 80/20 train/val split. Light augmentation (random resized crop, no flip: digits are not symmetric).
img_size = 32
train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmClsTransform', input_size=img_size, is_training=True, auto_augment=None, scale=(0.5, 1.0),
         ratio=(0.75, 1.33), hflip=0.0, color_jitter=0.0, interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
test_pipeline = [dict(type='PackClsInputs')]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,  # the transforms are cheap at 32 px; workers would only compete for the CPU
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ScaleNetDigits', split='train', img_size=img_size, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ScaleNetDigits', split='val', img_size=img_size, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
