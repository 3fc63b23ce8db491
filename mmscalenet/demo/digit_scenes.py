"""Digit scenes: a small COCO-format instance-segmentation data set made of scikit-learn's handwritten digits.

Each scene is an RGB canvas (default 96x96) holding 8x8 sklearn digits, upscaled (bicubic; the classification half
sees them at 32 px), tinted and pasted at random places. Two styles:

- ``'cluttered'`` (default): a textured background (gradient, grating, blobs, noise), up to four unannotated
  digit-like shapes (strokes, arcs, boxes, rings, crosses), one to five digits of 14-44 px in low- to high-contrast
  colours that may partly cover each other. Made so that no backbone saturates within the demo's schedule.
- ``'plain'``: a dark noisy background and one to three non-overlapping digits of 20-40 px (the stand-in up to
  release 19, which every detector solved to AP50 .99 within 800 iterations).

Instance masks are the visible ink (the upscaled intensity above a threshold, minus what later digits cover) and
boxes their tight boxes, so both are exact. Everything is deterministic from the seed; train and val scenes use
disjoint digit images (the classification half's train / val split).

Written layout (COCO, as mmdet's ``CocoDataset`` reads it)::

    ROOT/train/000000.png ...
    ROOT/val/000000.png ...
    ROOT/annotations/instances_train.json
    ROOT/annotations/instances_val.json

Categories are the ten digits, ids 1..10, names '0'..'9'. Masks are uncompressed COCO RLE (``iscrowd=0``), which
pycocotools and mmdet's ``LoadAnnotations(with_mask=True)`` read directly.

Command line: ``python -m mmscalenet.demo.digit_scenes OUT_DIR [--num-train N] [--num-val N] [--seed S] [--style S]``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

CLASSES = tuple(str(d) for d in range(10))
SPLITS = ('train', 'val')
# A version stamp written next to the data: a folder generated with other settings is regenerated.
FORMAT = 2


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


def _blend(under: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``under`` with ``colour`` painted over it at opacity ``alpha`` ((h, w, 1) in [0, 1]): how every digit and
    shape is drawn. Returns a new array (float64 when ``colour`` is: the scenes' arithmetic, kept bit for bit)."""
    return under * (1 - alpha) + colour * alpha


def make_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
               canvas: int = 96, max_digits: int = 3, size_range: Tuple[int, int] = (20, 40),
               ink_threshold: float = 0.3) -> Tuple[np.ndarray, List[dict]]:
    """One ``'plain'`` scene (the stand-in up to release 19): (canvas, canvas, 3) uint8 RGB image and its instances.

    Light, tinted digits on a dark, tinted, noisy background with a brightness gradient, never overlapping. Too easy
    to rank backbones: every detector reaches AP50 .99 within 800 iterations (docs/detection_transfer.md).
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
        img[y0:y0 + size, x0:x0 + size] = _blend(img[y0:y0 + size, x0:x0 + size], np.clip(ink, 0, 1)[..., None],
                                                 colour)
        mask = np.zeros((canvas, canvas), dtype=np.uint8)
        mask[y0:y0 + size, x0:x0 + size] = mask_local
        occupied[y0:y0 + size, x0:x0 + size] = True
        instances.append(dict(label=int(labels[idx]), bbox=_bbox(mask), mask=mask))
    return np.clip(img, 0, 255).astype(np.uint8), instances


def _bbox(mask: np.ndarray) -> List[float]:
    """COCO xywh box of a binary mask's pixels (the tight box, in whole pixels)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _textured_background(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """A dark, tinted canvas with a gradient, a grating, low-frequency blobs and pixel noise (float32, 0..255)."""
    img = np.empty((canvas, canvas, 3), dtype=np.float32)
    img[:] = rng.uniform(0, 90, size=3)
    yy, xx = np.mgrid[0:canvas, 0:canvas] / canvas
    img += rng.uniform(-30, 30, size=3) * (xx[..., None] - 0.5) + rng.uniform(-30, 30, size=3) * (yy[..., None] - 0.5)
    theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 12), rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    img += rng.uniform(0, 30) * grating[..., None] * rng.uniform(0.3, 1.0, size=3)
    blobs = rng.normal(0, 1, size=(6, 6, 3)).astype(np.float32)
    blobs = np.stack([np.asarray(Image.fromarray(blobs[..., c], mode='F').resize((canvas, canvas), Image.BICUBIC))
                      for c in range(3)], axis=-1)
    img += rng.uniform(5, 25) * blobs
    img += rng.normal(0, rng.uniform(3, 15), size=img.shape)
    return img


def _distractor(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """Alpha (canvas, canvas) in [0, 1] of one unannotated shape: a stroke, an arc, a box, a ring or a cross, drawn
    with digit-like line widths and sizes, so only the shape (not colour or contrast) tells it from a digit."""
    from PIL import ImageDraw
    layer = Image.new('L', (canvas, canvas), 0)
    draw = ImageDraw.Draw(layer)
    size = float(rng.uniform(10, 40))
    x0, y0 = rng.uniform(-size / 4, canvas - size * 3 / 4, size=2)
    box = [float(x0), float(y0), float(x0 + size), float(y0 + size * rng.uniform(0.5, 1.5))]
    width = int(rng.integers(2, 5))
    kind = int(rng.integers(5))
    if kind == 0:   # a polyline of 2-4 segments
        pts = [tuple(p) for p in rng.uniform(0, size, size=(int(rng.integers(3, 6)), 2)) + [x0, y0]]
        draw.line(pts, fill=255, width=width, joint='curve')
    elif kind == 1:
        start = float(rng.uniform(0, 360))
        draw.arc(box, start, start + float(rng.uniform(90, 300)), fill=255, width=width)
    elif kind == 2:
        draw.rectangle(box, outline=255, width=width)
    elif kind == 3:
        draw.ellipse(box, outline=255, width=width)
    else:
        draw.line([(box[0], box[1]), (box[2], box[3])], fill=255, width=width)
        draw.line([(box[0], box[3]), (box[2], box[1])], fill=255, width=width)
    return np.asarray(layer, dtype=np.float32) / 255.0


def make_cluttered_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
                         canvas: int = 96, max_digits: int = 5, size_range: Tuple[int, int] = (14, 44),
                         ink_threshold: float = 0.3, max_distractors: int = 4, max_occlusion: float = 0.25,
                         ) -> Tuple[np.ndarray, List[dict]]:
    """One ``'cluttered'`` scene (the default since release 19): harder in every way a backbone should matter.

    A textured background (:func:`_textured_background`), zero to ``max_distractors`` unannotated digit-like shapes
    (:func:`_distractor`), one to ``max_digits`` digits over a wider scale range, in colours from low to high
    contrast, which may overlap: a later digit covers an earlier one's ink, and is placed only where it hides at
    most ``max_occlusion`` of every earlier digit's visible mask and leaves it at least 12 pixels. Masks are the
    visible ink (an earlier digit's mask loses what a later one covers), boxes are their tight boxes, so both stay
    exact.
    """
    img = _textured_background(rng, canvas)
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        img = _blend(img, _distractor(rng, canvas)[..., None], rng.uniform(110, 255, size=3))
    masks: List[np.ndarray] = []
    found: List[int] = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        idx = int(pool[rng.integers(len(pool))])
        size = int(rng.integers(size_range[0], size_range[1] + 1))
        ink = _render_digit(images[idx], size)
        mask_local = ink > ink_threshold
        if mask_local.sum() < 12:
            continue
        for _try in range(20):  # rejection sampling: no earlier digit may lose more than max_occlusion of its ink
            x0, y0 = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
            mask = np.zeros((canvas, canvas), dtype=bool)
            mask[y0:y0 + size, x0:x0 + size] = mask_local
            if all((m & mask).sum() <= max_occlusion * m.sum() and (m & ~mask).sum() >= 12 for m in masks):
                break
        else:
            continue
        colour = rng.uniform(110, 255, size=3)
        img[y0:y0 + size, x0:x0 + size] = _blend(img[y0:y0 + size, x0:x0 + size], np.clip(ink, 0, 1)[..., None],
                                                 colour)
        masks = [m & ~mask for m in masks]
        masks.append(mask)
        found.append(int(labels[idx]))
    instances = [dict(label=label, bbox=_bbox(m), mask=m.astype(np.uint8)) for label, m in zip(found, masks)]
    return np.clip(img, 0, 255).astype(np.uint8), instances


def make_cluttered_crop(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
                        out_size: int = 32, canvas: int = 96, size_range: Tuple[int, int] = (20, 44),
                        max_others: int = 2, max_distractors: int = 4) -> Tuple[np.ndarray, int]:
    """One classification sample cut from a cluttered scene: ((out_size, out_size, 3) uint8 RGB, label).

    The scene is :func:`make_cluttered_scene`'s kind (textured background, unannotated shapes, other digits of any
    class), with the target digit drawn last near the centre, fully visible; the crop is a square around the target
    (1.2x-1.8x its side, centre jittered by up to a tenth of that side), resized to ``out_size``. So the label is
    the digit in the middle, and neighbours and shapes may reach into the crop: region classification as a
    detector's head sees it, a harder task than the clean digits.
    """
    img = _textured_background(rng, canvas)
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        img = _blend(img, _distractor(rng, canvas)[..., None], rng.uniform(110, 255, size=3))
    size = int(rng.integers(size_range[0], size_range[1] + 1))
    centre = canvas / 2 + rng.uniform(-6, 6, size=2)
    for _ in range(int(rng.integers(0, max_others + 1))):   # other digits anywhere, drawn under the target
        other = int(pool[rng.integers(len(pool))])
        s = int(rng.integers(size_range[0], size_range[1] + 1))
        x0, y0 = (int(v) for v in rng.integers(0, canvas - s + 1, size=2))
        img[y0:y0 + s, x0:x0 + s] = _blend(img[y0:y0 + s, x0:x0 + s], _render_digit(images[other], s)[..., None],
                                           rng.uniform(110, 255, size=3))
    idx = int(pool[rng.integers(len(pool))])
    x0, y0 = (int(round(c - size / 2)) for c in centre)
    target = _render_digit(images[idx], size)[..., None]
    img[y0:y0 + size, x0:x0 + size] = _blend(img[y0:y0 + size, x0:x0 + size], target, rng.uniform(110, 255, size=3))
    side = min(size * rng.uniform(1.2, 1.8), canvas - 4)
    cx, cy = centre + rng.uniform(-0.1, 0.1, size=2) * side
    cx, cy = (float(np.clip(c, side / 2, canvas - side / 2)) for c in (cx, cy))
    crop = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize(
        (out_size, out_size), Image.BICUBIC, box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    return np.asarray(crop), int(labels[idx])


def cluttered_crops(split: str, count: int, seed: int = 0, out_size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """``count`` :func:`make_cluttered_crop` samples of ``split`` ('train' / 'val', disjoint digit images: the
    classification split): (count, out_size, out_size, 3) uint8 and (count,) int64 labels, deterministic from the
    seed and the split."""
    images, labels = _digits()
    pool = split_pools(labels)[split]
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])   # a stream apart from the scenes' (no 3rd word)
    crops, found = zip(*(make_cluttered_crop(rng, images, labels, pool, out_size) for _ in range(count)))
    return np.stack(crops), np.asarray(found, dtype=np.int64)


STYLES = {'plain': make_scene, 'cluttered': make_cluttered_scene}
# per style: (max digits, size range) of generate()'s defaults
STYLE_DEFAULTS = {'plain': (3, (20, 40)), 'cluttered': (5, (14, 44))}


def split_pools(labels: np.ndarray, val_fraction: float = 0.2, split_seed: int = 0) -> Dict[str, np.ndarray]:
    """Disjoint digit images for train and val scenes: the same stratified split as the classification half
    (``mmscalenet.datasets.digits.split_indices``), so val scenes hold only digits the backbone never trained on."""
    from ..datasets.digits import split_indices
    train, val = split_indices(labels, val_fraction, split_seed)
    return {'train': train, 'val': val}


def _style_settings(style: str, max_digits: Optional[int], size_range: Optional[Tuple[int, int]],
                    ) -> Tuple[int, Tuple[int, int]]:
    """(max digits, size range) of a scene style, the style's defaults (``STYLE_DEFAULTS``) where not given."""
    if style not in STYLES:
        raise ValueError(f'style must be one of {sorted(STYLES)}, got {style!r}')
    max_digits = STYLE_DEFAULTS[style][0] if max_digits is None else max_digits
    return max_digits, tuple(STYLE_DEFAULTS[style][1] if size_range is None else size_range)


def iter_scenes(split: str, count: int, seed: int = 0, canvas: int = 96, max_digits: Optional[int] = None,
                size_range: Optional[Tuple[int, int]] = None, style: str = 'cluttered',
                ) -> Iterator[Tuple[np.ndarray, List[dict]]]:
    """The first ``count`` scenes of ``split`` ('train' / 'val') as :func:`generate` writes them: (image, instances)
    pairs, each instance ``dict(label, bbox, mask)`` (label 0..9, exact visible-ink mask). Deterministic from the
    seed, the split and the settings; ``max_digits`` / ``size_range`` default to the style's."""
    max_digits, size_range = _style_settings(style, max_digits, size_range)
    images, labels = _digits()
    pool = split_pools(labels)[split]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    for _ in range(count):
        yield STYLES[style](rng, images, labels, pool, canvas, max_digits, size_range)


def class_map(instances: Sequence[dict], shape: Tuple[int, int]) -> np.ndarray:
    """The semantic-segmentation label map of a scene: (H, W) uint8, 0 = background, ``label + 1`` where an
    instance's mask is set (the union of the instance masks per class; the masks of a scene never overlap)."""
    seg = np.zeros(shape, dtype=np.uint8)
    for inst in instances:
        seg[np.asarray(inst['mask'], dtype=bool)] = inst['label'] + 1
    return seg


def generate(out_dir: str, num_train: int = 600, num_val: int = 120, seed: int = 0, canvas: int = 96,
             max_digits: Optional[int] = None, size_range: Optional[Tuple[int, int]] = None, overwrite: bool = False,
             style: str = 'cluttered') -> Dict[str, str]:
    """Write the scenes and COCO annotations under ``out_dir``; returns the paths (ann files, image folders).

    ``style``: ``'cluttered'`` (default, :func:`make_cluttered_scene`) or ``'plain'`` (:func:`make_scene`, the
    previous stand-in); ``max_digits`` / ``size_range`` default to the style's (``STYLE_DEFAULTS``). Reuses an
    existing folder generated with the same settings (a stamp file records them) unless ``overwrite``.
    """
    max_digits, size_range = _style_settings(style, max_digits, size_range)
    settings = dict(format=FORMAT, style=style, num_train=num_train, num_val=num_val, seed=seed, canvas=canvas,
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
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [dict(id=d + 1, name=CLASSES[d], supercategory='digit') for d in range(10)]
    for split, count in zip(SPLITS, (num_train, num_val)):
        os.makedirs(paths[f'{split}_img'], exist_ok=True)
        coco = dict(info=dict(description=f'mmscalenet digit scenes ({split}, seed {seed})'), licenses=[],
                    images=[], annotations=[], categories=categories)
        ann_id = 1
        for i, (img, instances) in enumerate(iter_scenes(split, count, seed, canvas, max_digits, size_range, style)):
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
    p.add_argument('--style', choices=sorted(STYLES), default='cluttered')
    p.add_argument('--overwrite', action='store_true')
    a = p.parse_args(argv)
    paths = generate(a.out_dir, a.num_train, a.num_val, a.seed, a.canvas, overwrite=a.overwrite, style=a.style)
    print(json.dumps(paths, indent=2))


if __name__ == '__main__':
    main()
