# ScaleNet with LoRA (`scalenet_deit_s_24l_lora` of ../_base_/models/scalenet_backbones.py), after its ImageNet stage
# (configs/imagenet/scalenet_lora_deit-s-24l_8xb128-100e_in1k.py, then tools/extract_backbone.py on its work dir);
# otherwise vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py. From timm's DeiT-S grown at load instead:
#   --cfg-options model.backbone.init_cfg.checkpoint=timm:deit_small_patch16_224.fb_in1k
_base_ = './vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        adapter=dict(_base_.scalenet_deit_s_24l_lora['adapter'], _delete_=True),
        init_cfg=dict(checkpoint='work_dirs/scalenet_lora_deit-s-24l_8xb128-100e_in1k/backbone.pth')))
