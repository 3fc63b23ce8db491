"""The embedded stand-in for ImageNet: scikit-learn's handwritten digits (1,797 8x8 images, shipped with
scikit-learn, no download) upscaled to small RGB images, with a fixed stratified train/val split."""
from typing import Dict, Tuple

import numpy as np
from mmdet.registry import DATASETS
from PIL import Image

from .imagenet import ClsDataset

_CACHE: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}


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
