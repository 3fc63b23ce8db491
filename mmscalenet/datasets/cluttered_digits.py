"""A harder stand-in than the digits: digits cut out of cluttered scenes (``mmscalenet.demo.digit_scenes``), for the
question whether depth pays on the stand-in (docs/detection_transfer.md, section 6.5)."""
from typing import Dict, Optional, Tuple

import numpy as np
from mmdet.registry import DATASETS

from .imagenet import ClsDataset

_CACHE: Dict[tuple, Tuple[np.ndarray, np.ndarray]] = {}


@DATASETS.register_module()
class ScaleNetClutteredDigits(ClsDataset):
    """The digits cut out of cluttered scenes: a harder 10-class stand-in (``mmscalenet.demo.digit_scenes``'s
    :func:`make_cluttered_crop`: textured background, unannotated shapes and other digits reaching into the crop,
    a centred target digit of random size and contrast), made for the question whether depth pays on the stand-in.

    Args:
        split: 'train' or 'val' (disjoint digit images: :class:`ScaleNetDigits`' split).
        num_samples: crops in the split (default 8000 train, 1000 val).
        data_seed: the crops' generator seed (the data set is fixed by it, not by the training seed).
        img_size: side of the crops.
        pipeline, **kwargs: as :class:`ScaleNetDigits`.
    """

    def __init__(self, split: str = 'train', num_samples: Optional[int] = None, data_seed: int = 0,
                 img_size: int = 32, pipeline=None, **kwargs):
        if split not in ('train', 'val'):
            raise ValueError(f'ScaleNetClutteredDigits split must be "train" or "val", got {split!r}')
        self.num_samples = (8000 if split == 'train' else 1000) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f'num_samples must be at least 1, got {num_samples!r}')
        self.split, self.data_seed, self.img_size = split, data_seed, img_size
        super().__init__(pipeline=[dict(type='PackClsInputs')] if pipeline is None else pipeline, **kwargs)

    def load_samples(self):
        from ..demo.digit_scenes import cluttered_crops
        key = (self.split, self.num_samples, self.data_seed, self.img_size)
        if key not in _CACHE:
            _CACHE[key] = cluttered_crops(self.split, self.num_samples, self.data_seed, self.img_size)
        images, labels = _CACHE[key]
        return [(images[i], int(labels[i])) for i in range(len(labels))], [str(d) for d in range(10)]

    def __repr__(self) -> str:
        return f'{type(self).__name__}(split={self.split!r}, {len(self)} images)'
