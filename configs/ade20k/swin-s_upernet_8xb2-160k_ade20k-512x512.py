# Baseline at the grown depth: mmseg's own Swin-S UperNet config, as it is (mmseg zoo: 47.72 mIoU single-scale).
_base_ = ['mmseg::swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py']
default_scope = 'mmseg'
