# The same segmenter with the progressive (foil) backbone of the classification half: depth 4 grown to 8 by
# independent copies of the base layers (`digits_progressive_8l` of scalenet_backbones.py, the entry of
# digits_cls_progressive.py and digits_det_progressive.py). Everything else as digits_seg_base.py.
_base_ = ['./digits_seg_base.py', '../_base_/models/scalenet_backbones.py']

model = dict(
    backbone=dict(
        _base_.digits_progressive_8l,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/progressive_backbone.pth')))
