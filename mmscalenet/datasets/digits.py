"""The embedded stand-in for ImageNet: scikit-learn's handwritten digits (1,797 8x8 images, shipped with
scikit-learn, no download) upscaled to small RGB images, with a fixed stratified train/val split."""
from typing import Dict, Optional, Tuple

import numpy as np
from mmdet.registry import DATASETS
from PIL import Image

from .imagenet import ClsDataset

_CACHE: Dict[tuple, Tuple[np.ndarray, np.ndarray]] = {}


def digits_images(img_size: int = 32, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (N, img_size, img_size, 3) uint8 RGB (bicubic upscaling) and (N,) labels."""
    key = (img_size, seed)
    if key not in _CACHE:
        from sklearn.datasets import load_digits
        data = load_digits()
        imgs = np.clip(data.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
        up = np.stack([np.asarray(Image.fromarray(im).resize((img_size, img_size), Image.BICUBIC)) for im in imgs])
        _CACHE[key] = (np.repeat(up[..., None], 3, axis=-1), data.target.astype(np.int64))
    return _CACHE[key]


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: the same ``val_fraction`` of every class goes to val."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


@DATASETS.register_module()
class ScaleNetDigits(ClsDataset):
    """Handwritten digits as a 10-class image-classification set (an mmengine ``BaseDataset``).

    Args:
        split: 'train' or 'val' (``val_fraction`` of each class, fixed by ``split_seed``).
        img_size: side of the upscaled RGB images.
        pipeline: transform configs; samples start as ``dict(img=uint8 (H, W, 3) array, gt_label=int)``
            (default: ``[dict(type='PackClsInputs')]``, no augmentation).
        **kwargs: mmengine ``BaseDataset`` arguments: ``metainfo`` (class names; default '0' .. '9'),
            ``indices``, ``test_mode``, ``lazy_init``, ... (``data_root`` / ``ann_file`` are unused: the data ships
            with scikit-learn).
    """

    def __init__(self, split: str = 'train', img_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0,
                 pipeline=None, **kwargs):
        if split not in ('train', 'val'):
            raise ValueError(f'ScaleNetDigits split must be "train" or "val", got {split!r}')
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction!r}')
        self.split, self.img_size, self.val_fraction, self.split_seed = split, img_size, val_fraction, split_seed
        if pipeline is None:
            pipeline = [dict(type='PackClsInputs')]
        super().__init__(pipeline=pipeline, **kwargs)

    def load_samples(self):
        images, labels = digits_images(self.img_size)
        train, val = split_indices(labels, self.val_fraction, self.split_seed)
        idx = train if self.split == 'train' else val
        return [(images[i], int(labels[i])) for i in idx], [str(d) for d in range(10)]

    def __repr__(self) -> str:
        return f'{type(self).__name__}(split={self.split!r}, {len(self)} images)'


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
        key = ('cluttered', self.split, self.num_samples, self.data_seed, self.img_size)
        if key not in _CACHE:
            _CACHE[key] = cluttered_crops(self.split, self.num_samples, self.data_seed, self.img_size)
        images, labels = _CACHE[key]
        return [(images[i], int(labels[i])) for i in range(len(labels))], [str(d) for d in range(10)]

    def __repr__(self) -> str:
        return f'{type(self).__name__}(split={self.split!r}, {len(self)} images)'
