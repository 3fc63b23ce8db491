# The plain baseline of upernet_scalenet-deit-s-24_mln_*: the same recipe and code path with timm's DeiT-S as it is
# (12 layers, no sharing, no adapters), its maps from positions (2, 5, 8, 11) as mmseg's DeiT-S config takes them.
# mmseg zoo for the recipe with mmseg's own ViT (class token kept): 43.82 mIoU single-scale, 45.07 ms+flip.
_base_ = ['./upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='deit-small', depth=12, adapter=None, out_indices=(2, 5, 8, 11),
        init_cfg=dict(type='Pretrained', checkpoint='timm:deit_small_patch16_224.fb_in1k')))
