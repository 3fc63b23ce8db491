# The same segmenter with the ScaleNet backbone of the classification half: depth L = 4 grown to 2L = 8 positions
# (cyclic sharing, parallel adapters per position): `digits_scalenet_8l` of scalenet_backbones.py, the entry of
# digits_cls_scalenet.py and digits_det_scalenet.py. Everything else as digits_seg_base.py.
_base_ = ['./digits_seg_base.py', '../_base_/models/scalenet_backbones.py']

model = dict(
    backbone=dict(
        _base_.digits_scalenet_8l,
        adapter=dict(_base_.digits_scalenet_8l['adapter'], _delete_=True),   # replaces the base's adapter=None
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/scalenet_backbone.pth')))
