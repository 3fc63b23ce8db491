# ScaleNet: DeiT-S (12 layers) grown to 24 positions (cyclic sharing, parallel adapters per position), fine-tuned
# on COCO after its ImageNet stage (the paper's pipeline). The backbone is `scalenet_deit_s_24l` of
# ../_base_/models/scalenet_backbones.py, the entry of configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py, and
# it starts from that run's best checkpoint as tools/extract_backbone.py writes it:
#   python tools/train.py configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py
#   python tools/extract_backbone.py work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k  # -> .../backbone.pth
# Starting from timm's DeiT-S grown at load instead (no ImageNet stage; logged as such at start-up):
#   --cfg-options model.backbone.init_cfg.checkpoint=timm:deit_small_patch16_224.fb_in1k
_base_ = [
    './_base_/vitdet_mask-rcnn_lsj-100e_coco.py',
    '../_base_/models/scalenet_backbones.py',
]

model = dict(
    backbone=dict(
        _base_.scalenet_deit_s_24l,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k/backbone.pth')),
    neck=dict(backbone_channel=384))
# Layer decay 0.7 as the 12-layer recipe; the shared blocks keep their plain-recipe lr (sharing_rule='base', see
# mmscalenet/engine/layer_decay.py); the depth is read from the model.
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7))
