# ScaleNet: DeiT-B (12 layers) grown to 24 positions (cyclic sharing, parallel adapters per position).
# Override the checkpoint with an expanded or ImageNet-stage one via
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './_base_/vitdet_mask-rcnn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='deit-base',
        depth=24,
        mapping='cyclic',
        adapter=dict(_delete_=True, type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:deit_base_patch16_224.fb_in1k')),
    neck=dict(backbone_channel=768))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7, num_layers=24))
