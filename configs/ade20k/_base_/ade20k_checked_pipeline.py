# mmseg's ADE20K training pipeline (512x512 crops) with one addition: ScaleNetCheckSegLabels right after the labels
# are read, so a label map with a value outside the 150 classes stops training with one line naming the file (mmseg
# alone fails inside the loss, on a GPU as a device-side assert). A variable: the configs set it as their pipeline.
ade20k_checked_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='ScaleNetCheckSegLabels', num_classes=150),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
