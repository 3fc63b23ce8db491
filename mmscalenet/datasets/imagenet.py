"""ImageNet-1K in the folder layout (``<root>/<split>/<wnid>/*.JPEG``) or the list-file layout (``path label``).

Everything about the data on disk is checked when the dataset is built, i.e. before training starts: a missing
root, split folder or list file, a class folder with no images and a malformed list line are errors that name
the path.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import DATASETS

from .transforms import build_pipeline

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class ClsDataset(torch.utils.data.Dataset):
    """A list of ``(path or image, label)`` samples run through a transform pipeline."""

    def __init__(self, samples: List[Tuple[Any, int]], classes: Sequence[str], pipeline=None):
        self.samples = samples
        self.classes = tuple(classes)
        self.pipeline = build_pipeline(pipeline)

    @property
    def metainfo(self) -> Dict[str, Any]:
        return dict(classes=self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def get_data_info(self, idx: int) -> Dict[str, Any]:
        item, label = self.samples[idx]
        key = 'img_path' if isinstance(item, str) else 'img'
        return {key: item, 'gt_label': label, 'sample_idx': idx}

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        return self.pipeline(self.get_data_info(idx))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def scan_folder(folder: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[Tuple[str, int]], List[str]]:
    """``folder/<class>/<image>`` -> (samples, classes). Classes are the sorted sub-folder names (or ``classes``)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'dataset folder not found: {folder} (expected <data_root>/<split>/<class>/*.JPEG)')
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not found:
        raise ValueError(f'dataset folder {folder} has no class sub-folders (expected {folder}/<class>/*.JPEG)')
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f'{folder} has class folders not in the class list: {unknown[:5]}'
                             f'{" ..." if len(unknown) > 5 else ""}')
    index = {c: i for i, c in enumerate(classes)}
    samples: List[Tuple[str, int]] = []
    for c in found:
        sub = osp.join(folder, c)
        images = sorted(e.name for e in os.scandir(sub) if e.is_file() and _is_image(e.name))
        if not images:
            raise ValueError(f'class folder {sub} contains no images (extensions {", ".join(IMG_EXTENSIONS)})')
        samples.extend((osp.join(sub, name), index[c]) for name in images)
    return samples, list(classes)


def read_list_file(ann_file: str, prefix: str) -> List[Tuple[str, int]]:
    """``path label`` lines (paths relative to ``prefix``) -> samples; checks the file and its first image."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation list file not found: {ann_file}')
    samples: List[Tuple[str, int]] = []
    with open(ann_file) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit() or int(parts[1]) < 0:
                raise ValueError(f'{ann_file}:{lineno}: expected "<relative image path> <class index>", got {line!r}')
            samples.append((osp.join(prefix, parts[0]), int(parts[1])))
    if not samples:
        raise ValueError(f'annotation list file {ann_file} lists no images')
    if not osp.isfile(samples[0][0]):
        raise FileNotFoundError(f'{ann_file}: first listed image not found: {samples[0][0]} (paths are relative '
                                f'to {prefix})')
    return samples


@DATASETS.register_module()
class ScaleNetImageNet(ClsDataset):
    """ImageNet-1K (or any image-classification tree) for ``ScaleNetClassifier``.

    Args:
        data_root: dataset root, e.g. ``data/imagenet``.
        split: sub-folder of ``data_root`` holding ``<class>/*.JPEG`` (folder layout), or the images' prefix
            (list-file layout).
        ann_file: optional list file (relative to ``data_root`` or absolute) with ``<path> <label>`` lines, paths
            relative to ``data_root/split``; mmpretrain's ``meta/train.txt`` / ``meta/val.txt`` have this form.
        classes: optional class names in label order (folder layout: sub-folder names; default: the sorted
            sub-folder names of ``data_root/train``, else of ``data_root/split``).
        pipeline: transform configs (see ``mmscalenet/datasets/transforms.py``); None returns the raw
            ``dict(img_path, gt_label, sample_idx)`` records.
    """

    def __init__(self, data_root: str, split: str = 'train', ann_file: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None, pipeline=None):
        if not osp.isdir(data_root):
            raise FileNotFoundError(f'dataset root not found: {data_root} (set data_root in the config, or link the '
                                    f'dataset there)')
        folder = osp.join(data_root, split) if split else data_root
        if ann_file:
            ann_path = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
            samples = read_list_file(ann_path, folder)
            n = max(label for _, label in samples) + 1
            if classes is not None and n > len(classes):
                raise ValueError(f'{ann_path} has labels up to {n - 1} but only {len(classes)} classes are given')
            classes = list(classes) if classes is not None else [str(i) for i in range(n)]
        else:
            train_dir = osp.join(data_root, 'train')
            if classes is None and split != 'train' and osp.isdir(train_dir):
                # label indices must match the training split even when a class is absent from this one
                classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir()) or None
            samples, classes = scan_folder(folder, classes)
        self.data_root, self.split, self.ann_file = data_root, split, ann_file
        super().__init__(samples, classes, pipeline)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(data_root={self.data_root!r}, split={self.split!r}, '
                f'ann_file={self.ann_file!r}, {len(self)} images, {len(self.classes)} classes)')
