"""The embedded demo (``make demo``): digits classification, then digit-scene detection, on CPU.

The models are defined by the configs only (``configs/demo/``; the grown backbone is ``digits_scalenet_8l`` of
``configs/_base_/models/scalenet_backbones.py``, shared by the classification and the detection config). This module
holds the file names through which the detection half finds the backbones the classification half wrote.
"""
# Files the classification half writes under <work_dir>/classification/ (ScaleNet checkpoint format):
BASE_BACKBONE = 'classification/base_backbone.pth'          # depth L, out of the "pretraining" run
SCALENET_BACKBONE = 'classification/scalenet_backbone.pth'  # depth 2L, ScaleNet-grown and fine-tuned
SCRATCH_BACKBONE = 'classification/scratch_backbone.pth'    # depth 2L, untied, trained from random weights
SUMMARY = 'summary.json'
