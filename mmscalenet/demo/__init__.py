"""The embedded demo (``make demo``): digits classification, then digit-scene detection, on CPU.

Shared settings of the two halves, so the detection half can load the backbones the classification half wrote.
"""
# The small "pretrained" ViT: depth L = 4, grown by ScaleNet to 2L = 8.
DEMO_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0)
DEMO_DEPTH = 8
DEMO_IMG_SIZE = 32          # digits upscaled from 8x8 to 32x32 RGB
DEMO_PATCH_SIZE = 4         # 8x8 token grid at 32 px; stride 4 in detection scenes
DEMO_ADAPTER = dict(type='ParallelAdapter', bottleneck=8)
# Files the classification half writes under <work_dir>/classification/ (ScaleNet checkpoint format):
BASE_BACKBONE = 'classification/base_backbone.pth'          # depth L, out of the "pretraining" run
SCALENET_BACKBONE = 'classification/scalenet_backbone.pth'  # depth 2L, ScaleNet-grown and fine-tuned
SUMMARY = 'summary.json'
