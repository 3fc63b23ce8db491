# The same segmenter with the scratch backbone of the classification half: an ordinary (untied, no adapters) ViT of
# depth 2L = 8 trained on the digits from random weights (digits_cls_scratch.py). Everything else as
# digits_seg_base.py: the paper's comparison (grown vs. the same depth from scratch) carried into segmentation.
_base_ = './digits_seg_base.py'

model = dict(
    backbone=dict(
        arch=dict(num_layers=8),
        depth=None,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/scratch_backbone.pth')))
