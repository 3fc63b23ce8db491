# Baseline: mmseg's own Swin-T UperNet config, as it is (mmseg zoo: 44.41 mIoU single-scale, 45.79 ms+flip).
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py']
default_scope = 'mmseg'
