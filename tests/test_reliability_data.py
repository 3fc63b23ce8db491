"""The shipped ImageNet / Swin training augmentation cannot crash on a valid image (timm's RandAugment
``posterize`` draws 0 bits on ~1 image in 2,000, which Pillow 13 refuses), and data mistakes are one line."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT


def _shipped_train_transform(input_size=16):
    """The ``TimmClsTransform`` of the shipped ImageNet train pipeline, on tiny images (the ops are the same)."""
    from mmengine.config import Config
    import mmscalenet  # noqa: F401
    from mmdet.registry import TRANSFORMS
    cfg = Config.fromfile(f'{ROOT}/configs/_base_/datasets/imagenet_deit.py')
    spec = dict(next(t for t in cfg.train_pipeline if t['type'] == 'TimmClsTransform'), input_size=input_size)
    assert spec['auto_augment'] == 'rand-m9-mstd0.5-inc1'
    return TRANSFORMS.build(spec)


def test_shipped_train_augmentation_survives_thousands_of_images():
    """6,000 random 12x12 images through the shipped train transform with a fixed seed: no error. Unguarded,
    Pillow 13 raised on this seed (posterize with 0 bits)."""
    transform = _shipped_train_transform()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for _ in range(6000):
        img = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        out = transform.transform(dict(img=img))['img']
        assert out.dtype == torch.uint8 and out.shape == (3, 16, 16)


def test_posterize_with_zero_bits_gives_the_black_image():
    from timm.data import auto_augment
    from mmscalenet.datasets.transforms import posterize_any_bits
    img = Image.fromarray(np.full((4, 4, 3), 201, dtype=np.uint8))
    assert np.array_equal(np.asarray(posterize_any_bits(img, 0)), np.zeros((4, 4, 3), np.uint8))
    assert np.array_equal(np.asarray(posterize_any_bits(img, 1)), np.full((4, 4, 3), 128, np.uint8))
    assert posterize_any_bits(img, 8) is img
    transform = _shipped_train_transform()
    ops = [op for t in transform.timm_transform.transforms for op in getattr(t, 'ops', [])]
    assert any(op.name.startswith('Posterize') for op in ops)
    assert all(op.aug_fn is not auto_augment.posterize for op in ops)
