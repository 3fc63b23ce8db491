"""Digit scenes: a small COCO-format instance-segmentation data set made of scikit-learn's handwritten digits.

Each scene is an RGB canvas (default 96x96) with a dark, tinted, noisy background and one to three 8x8 sklearn
digits, upscaled to random sizes (20-40 px; the classification half sees them at 32 px), tinted, and pasted at
random places without overlapping. Boxes and instance masks come from the digit's ink (the upscaled intensity above
a threshold), so they are exact. Everything is deterministic from the seed; train and val scenes use disjoint digit
images (the classification half's train / val split).

Written layout (COCO, as mmdet's ``CocoDataset`` reads it)::

    ROOT/train/000000.png ...
    ROOT/val/000000.png ...
    ROOT/annotations/instances_train.json
    ROOT/annotations/instances_val.json

Categories are the ten digits, ids 1..10, names '0'..'9'. Masks are uncompressed COCO RLE (``iscrowd=0``), which
pycocotools and mmdet's ``LoadAnnotations(with_mask=True)`` read directly.

Command line: ``python -m mmscalenet.demo.digit_scenes OUT_DIR [--num-train N] [--num-val N] [--seed S]``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

CLASSES = tuple(str(d) for d in range(10))
SPLITS = ('train', 'val')
# A version stamp written next to the data: a folder generated with other settings is regenerated.
FORMAT = 1


def _digits() -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def rle_encode(mask: np.ndarray) -> Dict[str, list]:
    """Uncompressed COCO RLE of a binary (H, W) mask: run lengths over the column-major pixels, zeros first."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=np.uint8).flatten(order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:  # RLE starts with a run of zeros
        counts = [0] + counts
    return {'counts': [int(c) for c in counts], 'size': [int(h), int(w)]}


def rle_decode(rle: Dict[str, list]) -> np.ndarray:
    """Inverse of :func:`rle_encode` (for tests and checks without pycocotools)."""
    h, w = rle['size']
    flat = np.zeros(h * w, dtype=np.uint8)
    pos, value = 0, 0
    for c in rle['counts']:
        flat[pos:pos + c] = value
        pos += c
        value = 1 - value
    return flat.reshape((w, h)).T


def _render_digit(img8: np.ndarray, size: int) -> np.ndarray:
    """8x8 intensities in [0, 1] -> (size, size) intensities in [0, 1], bicubic as the classification digits."""
    pil = Image.fromarray((img8 * 255).astype(np.uint8), mode='L')
    return np.asarray(pil.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def make_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
               canvas: int = 96, max_digits: int = 3, size_range: Tuple[int, int] = (20, 40),
               ink_threshold: float = 0.3) -> Tuple[np.ndarray, List[dict]]:
    """One scene: (canvas, canvas, 3) uint8 RGB image and its instances (label, bbox xywh, binary mask).

    Light, tinted digits on a dark, tinted, noisy background with a brightness gradient: close enough to the
    classification digits (light on black, 32 px) for the "pretrained" backbone to help, not a colour threshold.
    """
    bg = rng.uniform(0, 70, size=3)
    img = np.empty((canvas, canvas, 3), dtype=np.float32)
    img[:] = bg
    yy, xx = np.mgrid[0:canvas, 0:canvas] / canvas
    img += rng.uniform(-25, 25, size=3) * (xx[..., None] - 0.5) + rng.uniform(-25, 25, size=3) * (yy[..., None] - 0.5)
    img += rng.normal(0, 6, size=img.shape)
    occupied = np.zeros((canvas, canvas), dtype=bool)
    instances = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        idx = int(pool[rng.integers(len(pool))])
        size = int(rng.integers(size_range[0], size_range[1] + 1))
        for _try in range(20):  # rejection sampling: digits never overlap, so masks and boxes stay exact
            x0, y0 = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
            if not occupied[max(0, y0 - 2):y0 + size + 2, max(0, x0 - 2):x0 + size + 2].any():
                break
        else:
            continue
        ink = _render_digit(images[idx], size)
        mask_local = ink > ink_threshold
        if mask_local.sum() < 12:
            continue
        colour = rng.uniform(150, 255, size=3)
        alpha = np.clip(ink, 0, 1)[..., None]
        patch = img[y0:y0 + size, x0:x0 + size]
        img[y0:y0 + size, x0:x0 + size] = patch * (1 - alpha) + colour * alpha
        mask = np.zeros((canvas, canvas), dtype=np.uint8)
        mask[y0:y0 + size, x0:x0 + size] = mask_local
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        occupied[y0:y0 + size, x0:x0 + size] = True
        instances.append(dict(label=int(labels[idx]), bbox=bbox, mask=mask))
    return np.clip(img, 0, 255).astype(np.uint8), instances


def split_pools(labels: np.ndarray, val_fraction: float = 0.2, split_seed: int = 0) -> Dict[str, np.ndarray]:
    """Disjoint digit images for train and val scenes: the same stratified split as the classification half
    (``mmscalenet.datasets.digits.split_indices``), so val scenes hold only digits the backbone never trained on."""
    from ..datasets.digits import split_indices
    train, val = split_indices(labels, val_fraction, split_seed)
    return {'train': train, 'val': val}


def generate(out_dir: str, num_train: int = 600, num_val: int = 120, seed: int = 0, canvas: int = 96,
             max_digits: int = 3, size_range: Tuple[int, int] = (20, 40), overwrite: bool = False) -> Dict[str, str]:
    """Write the scenes and COCO annotations under ``out_dir``; returns the paths (ann files, image folders).

    Reuses an existing folder generated with the same settings (a stamp file records them) unless ``overwrite``.
    """
    settings = dict(format=FORMAT, num_train=num_train, num_val=num_val, seed=seed, canvas=canvas,
                    max_digits=max_digits, size_range=list(size_range))
    paths = dict(root=out_dir, **{f'{s}_ann': osp.join(out_dir, 'annotations', f'instances_{s}.json')
                                  for s in SPLITS}, **{f'{s}_img': osp.join(out_dir, s) for s in SPLITS})
    stamp = osp.join(out_dir, 'scenes.json')
    if not overwrite and osp.isfile(stamp) and all(osp.isfile(paths[f'{s}_ann']) for s in SPLITS):
        with open(stamp) as f:
            if json.load(f) == settings:
                return paths
    if canvas < size_range[1] + 4 or size_range[0] < 8:
        raise ValueError(f'size_range={size_range} does not fit a {canvas} px canvas (digits need 8..canvas-4 px)')
    images, labels = _digits()
    pools = split_pools(labels)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [dict(id=d + 1, name=CLASSES[d], supercategory='digit') for d in range(10)]
    for split_no, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng([seed, split_no])
        os.makedirs(paths[f'{split}_img'], exist_ok=True)
        coco = dict(info=dict(description=f'mmscalenet digit scenes ({split}, seed {seed})'), licenses=[],
                    images=[], annotations=[], categories=categories)
        ann_id = 1
        for i in range(count):
            img, instances = make_scene(rng, images, labels, pools[split], canvas, max_digits, size_range)
            name = f'{i:06d}.png'
            Image.fromarray(img).save(osp.join(paths[f'{split}_img'], name))
            coco['images'].append(dict(id=i + 1, file_name=name, height=canvas, width=canvas))
            for inst in instances:
                coco['annotations'].append(dict(
                    id=ann_id, image_id=i + 1, category_id=inst['label'] + 1, bbox=inst['bbox'],
                    area=float(inst['mask'].sum()), segmentation=rle_encode(inst['mask']), iscrowd=0))
                ann_id += 1
        tmp = paths[f'{split}_ann'] + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp, paths[f'{split}_ann'])
    with open(stamp, 'w') as f:
        json.dump(settings, f)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description='Write the digit-scene instance-segmentation set (COCO format)')
    p.add_argument('out_dir')
    p.add_argument('--num-train', type=int, default=600)
    p.add_argument('--num-val', type=int, default=120)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--canvas', type=int, default=96)
    p.add_argument('--overwrite', action='store_true')
    a = p.parse_args(argv)
    paths = generate(a.out_dir, a.num_train, a.num_val, a.seed, a.canvas, overwrite=a.overwrite)
    print(json.dumps(paths, indent=2))


if __name__ == '__main__':
    main()
