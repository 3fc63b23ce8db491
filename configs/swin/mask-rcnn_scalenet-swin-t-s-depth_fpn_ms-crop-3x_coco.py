# Mask R-CNN FPN 3x (multi-scale + crop training, 36 epochs) on COCO with ScaleNet-Swin-T@S (Swin-T grown to
# Swin-S's depths 2, 2, 18, 2; see mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py). mmdet's Swin 3x recipe
# (mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py) with the backbone replaced.
# mmdet model zoo, same schedule: Swin-T 3x box AP 46.0 / mask AP 41.6; Swin-S 3x 48.2 / 43.2 (the question: how
# close does Swin-T@S, at Swin-T's parameters, come to Swin-S?). No run of this config has been made yet.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/scalenet_backbones.py']
default_scope = 'mmdet'
custom_imports = dict(imports=['mmscalenet'], allow_failed_imports=False)
pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'  # noqa
model = dict(
    backbone=dict(
        _base_.scalenet_swin_t_s_depth,   # the entry the ImageNet stage uses too
        _delete_=True,
        img_size=224,
        drop_path_rate=0.2,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
