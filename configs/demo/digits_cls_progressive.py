# Demo, the paper's foil: the depth-4 model of digits_cls_base.py grown to depth 8 by progressive growth (every
# position its own copy of the base layer the cyclic map gives it: no sharing, no adapters), trained exactly as
# digits_cls_scalenet.py (same epochs and recipe): only the growth differs.
# python tools/train.py configs/demo/digits_cls_progressive.py \
#     --cfg-options model.init_cfg.checkpoint=work_dirs/demo/classification/base_backbone.pth
_base_ = ['./digits_cls_scalenet.py']
model = dict(backbone=_base_.digits_progressive_8l)   # over the ScaleNet entry; digits_det_progressive.py uses it too
