# The paper's foil beside ScaleNet (its Fig. 1): progressive growth. timm's pretrained DeiT-Small (12 layers) grown
# to 24 layers by stacking independent copies (position p starts as a copy of layer p mod 12; no sharing, no
# adapters: twice the parameters of ScaleNet's), trained with ScaleNet's 100-epoch recipe: only the growth differs
# from scalenet_deit-s-24l_8xb128-100e_in1k.py. The function-preserving variant (the inserted copies' output
# projections zeroed at load, so training starts from DeiT-S itself):
#   --cfg-options model.backbone.growth=copy_zero
# The backbone is `progressive_deit_s_24l` of ../_base_/models/scalenet_backbones.py, the entry its COCO config
# (configs/coco/vitdet_mask-rcnn_progressive-deit-s-24_lsj-100e_coco.py) uses. No run of this config has been made.
_base_ = ['./scalenet_deit-s-24l_8xb128-100e_in1k.py']
model = dict(backbone=_base_.progressive_deit_s_24l)   # over the ScaleNet config's backbone (no adapters)
