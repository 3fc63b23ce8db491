# The demo's small ViT classifier (mmscalenet.demo: DEMO_ARCH, 32 px images, 4 px patches -> 8x8 tokens). The base
# and scratch configs make it plain (depth=None, adapter=None), the ScaleNet one grows it (scalenet_backbones.py).
model = dict(
    type='ScaleNetClassifier',
    backbone=dict(
        type='ScaleNetViT',
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.1,
        out_type='cls_token',
    ),
    num_classes=10,
    label_smoothing=0.1,
    data_preprocessor=dict(type='ScaleNetClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
)
