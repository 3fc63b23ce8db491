"""Semantic segmentation data checks (mmseg configs, e.g. configs/ade20k/): bad input refused in one line.

mmseg's ADE20K dataset lists the images and derives each annotation's name without looking for it, and a label
beyond the classes reaches the loss as an index error (on a GPU: a device-side assert). Here:

* :func:`check_segmentation_split` (run by ``tools/train.py`` before any work): every listed image has its
  annotation file; an empty split or a missing folder is named.
* ``ScaleNetCheckSegLabels`` (a transform after ``LoadAnnotations``): every label of a map is a class index or the
  ignore index, else one error naming the file and the offending values.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Mapping

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from .errors import DataValueError


class SegmentationDataError(DataValueError):
    """A segmentation split or annotation that cannot be trained on (the tools print it as one line)."""


def check_segmentation_split(dataset_cfg: Mapping[str, Any], name: str = 'dataset') -> int:
    """Build an mmseg dataset from its config and check that it has images and every image its annotation file;
    returns the sample count. Needs mmseg's default scope (the tools set it)."""
    import copy

    from mmseg.registry import DATASETS
    cfg = copy.deepcopy(dict(dataset_cfg))
    folder = osp.join(cfg.get('data_root', '') or '', (cfg.get('data_prefix', None) or {}).get('img_path', ''))
    if not osp.isdir(folder):
        raise SegmentationDataError(f'{name}: image folder {folder} does not exist')
    try:
        dataset = DATASETS.build(cfg)
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    except ValueError as err:   # mmengine cannot serialise an empty list ("need at least one array ...")
        infos, detail = [], err
    else:
        detail = None
    if not infos:
        raise SegmentationDataError(f'{name}: no images found under {folder} (suffix '
                                    f'{cfg.get("img_suffix", ".jpg")}){f": {detail}" if detail else ""}')
    missing = [info['seg_map_path'] for info in infos
               if info.get('seg_map_path') and not osp.isfile(info['seg_map_path'])]
    if missing:
        raise SegmentationDataError(f'{name}: {len(missing)} of {len(infos)} images have no annotation file, e.g. '
                                    f'{missing[0]}')
    return len(infos)


@TRANSFORMS.register_module()
class ScaleNetCheckSegLabels(BaseTransform):
    """Refuse a label map with values outside ``[0, num_classes)`` and ``ignore_index`` (after zero-label reduction,
    as ``LoadAnnotations`` leaves it)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive integer, got {num_classes!r}')
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def transform(self, results: Dict[str, Any]) -> Dict[str, Any]:
        seg = results.get('gt_seg_map')
        if seg is None:
            raise SegmentationDataError(f'{results.get("img_path", "a sample")}: no label map loaded (put '
                                        f'ScaleNetCheckSegLabels after LoadAnnotations)')
        values = np.unique(seg)
        bad = values[((values < 0) | (values >= self.num_classes)) & (values != self.ignore_index)]
        if bad.size:
            raise SegmentationDataError(
                f'{results.get("seg_map_path", "a label map")}: labels {bad[:8].tolist()} are outside the '
                f'{self.num_classes} classes (0..{self.num_classes - 1}, ignore {self.ignore_index}, after '
                f'reduce_zero_label where the dataset uses it)')
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'


def is_segmentation_config(cfg: Mapping[str, Any]) -> bool:
    """An mmseg config (its default scope)."""
    return cfg.get('default_scope', None) == 'mmseg'
