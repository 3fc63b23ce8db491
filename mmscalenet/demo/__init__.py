"""The embedded demo (``make demo``): digits classification, then digit-scene detection and segmentation, on CPU.

The models are defined by the configs only (``configs/demo/``; the grown backbone is ``digits_scalenet_8l`` of
``configs/_base_/models/scalenet_backbones.py``, shared by the classification, detection and segmentation configs).
This module holds the file names through which the downstream halves (detection, segmentation) find the backbones
the classification half wrote, the rows they train, and the summary file every half writes into.
"""
import json
import os
import os.path as osp
import tempfile
from typing import Any, Dict

# Files the classification half writes under <work_dir>/classification/ (ScaleNet checkpoint format):
BASE_BACKBONE = 'classification/base_backbone.pth'          # depth L, out of the "pretraining" run
SCALENET_BACKBONE = 'classification/scalenet_backbone.pth'  # depth 2L, ScaleNet-grown and fine-tuned
SCRATCH_BACKBONE = 'classification/scratch_backbone.pth'    # depth 2L, untied, trained from random weights
# depth 2L, the paper's foil (progressive growth): independent copies of the base layers, fine-tuned like ScaleNet
PROGRESSIVE_BACKBONE = 'classification/progressive_backbone.pth'
#: the backbones each downstream half (detection, segmentation) trains with, in table order: (row, checkpoint file)
ROWS = (('base', BASE_BACKBONE), ('scalenet', SCALENET_BACKBONE), ('progressive', PROGRESSIVE_BACKBONE),
        ('scratch', SCRATCH_BACKBONE))
SUMMARY = 'summary.json'


def merge_summary(work_dir: str, key: str, section: Dict[str, Any]) -> Dict[str, Any]:
    """Set ``key`` (``classification`` / ``detection`` / ``segmentation``) of ``<work_dir>/summary.json``, keeping
    the other halves' entries; an unreadable file starts afresh. Written through a temporary file + rename (never
    half a file)."""
    path = osp.join(work_dir, SUMMARY)
    summary: Any = {}
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        pass
    summary = dict(summary, **{key: section}) if isinstance(summary, dict) else {key: section}
    fd, tmp = tempfile.mkstemp(prefix='.summary-', suffix='.json', dir=osp.dirname(osp.abspath(path)))
    with os.fdopen(fd, 'w') as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, path)
    return summary
