# ScaleNet: DeiT-S (12 layers) grown to 24 positions (cyclic sharing, parallel adapters per position).
# The backbone checkpoint can be timm's DeiT-S (grown at load time), an expanded checkpoint from
# `tools/expand.py`, or the ImageNet-stage checkpoint of the same model, e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/scalenet-deit-s-24_in1k/epoch_100.pth
_base_ = './_base_/vitdet_mask-rcnn_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='deit-small',
        depth=24,
        mapping='cyclic',
        adapter=dict(_delete_=True, type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k')),
    neck=dict(backbone_channel=384))
# Layer decay runs over the grown depth; a shared tensor decays with its original position.
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7, num_layers=24))
