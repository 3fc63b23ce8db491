# ScaleNet with LoRA: timm's DeiT-Small (12 layers) grown to 24 layers like scalenet_deit-s-24l_8xb128-100e_in1k.py,
# with per-position LoRA (rank 8, alpha 16) instead of parallel adapters: `scalenet_deit_s_24l_lora` of
# ../_base_/models/scalenet_backbones.py. LoRA merges into the weights, so the trained model exports to a plain,
# untied timm ViT of depth 24:
#   python tools/export.py work_dirs/scalenet_lora_deit-s-24l_8xb128-100e_in1k/best_accuracy_top1_epoch_*.pth \
#       deit-s-24l-timm.pth --format timm
_base_ = './scalenet_deit-s-24l_8xb128-100e_in1k.py'
model = dict(backbone=dict(adapter=dict(_base_.scalenet_deit_s_24l_lora['adapter'], _delete_=True)))
