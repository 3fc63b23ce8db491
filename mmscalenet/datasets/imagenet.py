"""ImageNet-1K in the folder layout (``<root>/<split>/<wnid>/*.JPEG``) or the list-file layout (``path label``).

Everything about the data on disk is checked when the dataset is built, i.e. before training starts: a missing
root, split folder or list file, a class folder with no images and a malformed list line are errors that name
the path.
"""
import os
import os.path as osp
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mmdet.registry import DATASETS
from mmengine.dataset import BaseDataset

from .errors import DataNotFoundError, DataValueError
from .transforms import build_pipeline

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class ClsDataset(BaseDataset):
    """An mmengine ``BaseDataset`` of ``dict(img_path=... | img=array, gt_label=int)`` records.

    Subclasses implement :meth:`load_samples` (-> ``(samples, classes)``); everything mmengine's datasets take works:
    ``metainfo`` (``classes`` as names or a file of names), ``data_root`` / ``data_prefix`` / ``ann_file``,
    ``indices``, ``test_mode``, ``lazy_init``, ``serialize_data``, and the dataset wrappers (``RepeatDataset``,
    ``ConcatDataset``, ``ClassBalancedDataset`` through :meth:`get_cat_ids`).
    """

    METAINFO: Dict[str, Any] = dict(classes=None)

    def __init__(self, pipeline=None, **kwargs: Any):
        super().__init__(pipeline=[], **kwargs)
        self.pipeline = build_pipeline(pipeline)  # from mmdet's registry: no default scope needed

    def load_samples(self) -> Tuple[List[Tuple[Any, int]], Sequence[str]]:
        raise NotImplementedError

    def load_data_list(self) -> List[Dict[str, Any]]:
        samples, classes = self.load_samples()
        given = self._metainfo.get('classes')
        if given:
            n = max((label for _, label in samples), default=-1) + 1
            if n > len(given):
                raise DataValueError(f'{type(self).__name__}: labels go up to {n - 1} but metainfo lists only '
                                 f'{len(given)} classes')
        else:
            self._metainfo['classes'] = tuple(classes)
        self._metainfo['classes'] = tuple(self._metainfo['classes'])
        # an image held in memory gets a name in ``img_path`` (not a file): what mmdet's dataset tools name their
        # output by; LoadImagePIL takes ``img`` when it is there
        prefix = '_'.join(filter(None, (type(self).__name__, str(getattr(self, 'split', '') or ''))))
        return [dict(img_path=item, gt_label=int(label)) if isinstance(item, str) else
                dict(img=item, img_path=f'{prefix}_{i:05d}.png', gt_label=int(label))
                for i, (item, label) in enumerate(samples)]

    @property
    def classes(self) -> Tuple[str, ...]:
        return tuple(self.metainfo.get('classes') or ())

    @property
    def samples(self) -> List[Tuple[Any, int]]:
        """``(path or image, label)`` per sample (after ``indices``)."""
        out = []
        for i in range(len(self)):
            info = self.get_data_info(i)
            out.append((info['img'] if 'img' in info else info['img_path'], info['gt_label']))
        return out

    def get_cat_ids(self, idx: int) -> List[int]:
        """The sample's class, for ``ClassBalancedDataset``."""
        return [int(self.get_data_info(idx)['gt_label'])]


def _merge_classes(metainfo: Optional[Mapping[str, Any]], classes: Optional[Union[str, Sequence[str]]]):
    """``classes=`` (the older argument) folded into ``metainfo``; a string is a file with one name per line."""
    metainfo = dict(metainfo or {})
    if classes is not None:
        metainfo['classes'] = classes
    value = metainfo.get('classes')
    if isinstance(value, str):
        if not osp.isfile(value):
            raise DataNotFoundError(f'class names file not found: {value} (one class name per line)')
        with open(value) as f:
            metainfo['classes'] = tuple(line.strip() for line in f if line.strip())
    elif value is not None:
        metainfo['classes'] = tuple(value)
    return metainfo


def readable_class_names(classes: Sequence[str]) -> List[str]:
    """ImageNet-1K's WordNet ids (the folder names, ``n01440764``) as the words they stand for (``tench``), from
    timm's ImageNet-1K synset table; any other list of names (or one with a name outside that table) unchanged."""
    names = [str(c) for c in classes]
    if not names or not all(re.fullmatch(r'n\d{8}', n) for n in names):
        return names
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return names
    info = ImageNetInfo()
    index = {wnid: i for i, wnid in enumerate(info.label_names())}
    if not all(n in index for n in names):
        return names
    return [info.index_to_description(index[n]).split(',')[0].strip() for n in names]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def scan_folder(folder: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[Tuple[str, int]], List[str]]:
    """``folder/<class>/<image>`` -> (samples, classes). Classes are the sorted sub-folder names (or ``classes``)."""
    if not osp.isdir(folder):
        raise DataNotFoundError(f'dataset folder not found: {folder} (expected <data_root>/<split>/<class>/*.JPEG)')
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not found:
        raise DataValueError(f'dataset folder {folder} has no class sub-folders (expected {folder}/<class>/*.JPEG)')
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataValueError(f'{folder} has class folders not in the class list: {unknown[:5]}'
                             f'{" ..." if len(unknown) > 5 else ""}')
    index = {c: i for i, c in enumerate(classes)}
    samples: List[Tuple[str, int]] = []
    for c in found:
        sub = osp.join(folder, c)
        images = sorted(e.name for e in os.scandir(sub) if e.is_file() and _is_image(e.name))
        if not images:
            raise DataValueError(f'class folder {sub} contains no images (extensions {", ".join(IMG_EXTENSIONS)})')
        samples.extend((osp.join(sub, name), index[c]) for name in images)
    return samples, list(classes)


def read_list_file(ann_file: str, prefix: str) -> List[Tuple[str, int]]:
    """``path label`` lines (paths relative to ``prefix``) -> samples; checks the file and its first image."""
    if not osp.isfile(ann_file):
        raise DataNotFoundError(f'annotation list file not found: {ann_file}')
    samples: List[Tuple[str, int]] = []
    with open(ann_file) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit() or int(parts[1]) < 0:
                raise DataValueError(f'{ann_file}:{lineno}: expected "<relative image path> <class index>", '
                                     f'got {line!r}')
            samples.append((osp.join(prefix, parts[0]), int(parts[1])))
    if not samples:
        raise DataValueError(f'annotation list file {ann_file} lists no images')
    if not osp.isfile(samples[0][0]):
        raise DataNotFoundError(f'{ann_file}: first listed image not found: {samples[0][0]} (paths are relative '
                                f'to {prefix})')
    return samples


@DATASETS.register_module()
class ScaleNetImageNet(ClsDataset):
    """ImageNet-1K (or any image-classification tree) for ``ScaleNetClassifier``.

    Args:
        data_root: dataset root, e.g. ``data/imagenet``.
        split: sub-folder of ``data_root`` holding ``<class>/*.JPEG`` (folder layout), or the images' prefix
            (list-file layout). ``data_prefix=dict(img_path=...)`` (mmengine's name) overrides it.
        ann_file: optional list file (relative to ``data_root`` or absolute) with ``<path> <label>`` lines, paths
            relative to ``data_root/split``; mmpretrain's ``meta/train.txt`` / ``meta/val.txt`` have this form.
        classes / metainfo=dict(classes=...): class names in label order, or a file with one name per line.
            Default: the sorted sub-folder names of ``data_root/train`` (else of the split folder); with a list file
            also ``data_root/meta/classes.txt`` when present; only then the label indices.
        pipeline: transform configs (see ``mmscalenet/datasets/transforms.py``); None returns the raw
            ``dict(img_path, gt_label, sample_idx)`` records.
        **kwargs: mmengine ``BaseDataset`` arguments: ``indices``, ``test_mode``, ``lazy_init``, ...
    """

    def __init__(self, data_root: str, split: str = 'train', ann_file: Optional[str] = None,
                 classes: Optional[Union[str, Sequence[str]]] = None, pipeline=None,
                 metainfo: Optional[Mapping[str, Any]] = None, data_prefix: Optional[Mapping[str, str]] = None,
                 **kwargs: Any):
        if data_prefix is None:
            data_prefix = dict(img_path=split or '')
        elif 'img_path' not in data_prefix:
            raise DataValueError(f'data_prefix must have an "img_path" entry (the image folder), got '
                                 f'{dict(data_prefix)}')
        self.split, self._raw_root = split, data_root
        super().__init__(data_root=data_root, ann_file=ann_file or '', data_prefix=dict(data_prefix),
                         metainfo=_merge_classes(metainfo, classes), pipeline=pipeline, **kwargs)

    def load_samples(self) -> Tuple[List[Tuple[str, int]], Sequence[str]]:
        data_root = self._raw_root
        if not osp.isdir(data_root):
            raise DataNotFoundError(f'dataset root not found: {data_root} (set data_root in the config, or link the '
                                    f'dataset there)')
        folder = self.data_prefix['img_path'].rstrip('/') or data_root
        classes = self._metainfo.get('classes')
        train_dir = osp.join(data_root, 'train')
        train_classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir()) if osp.isdir(train_dir) else []
        if self.ann_file:
            samples = read_list_file(self.ann_file, folder)
            n = max(label for _, label in samples) + 1
            if not classes:
                names_file = osp.join(data_root, 'meta', 'classes.txt')
                if osp.isfile(names_file):
                    classes = _merge_classes(None, names_file)['classes']
                elif len(train_classes) >= n:
                    classes = train_classes   # the labels of mmpretrain's list files index the sorted folders
                else:
                    classes = [str(i) for i in range(n)]
            return samples, classes
        if not classes and self.split != 'train' and train_classes:
            # label indices must match the training split even when a class is absent from this one
            classes = train_classes
        return scan_folder(folder, classes or None)

    def __repr__(self) -> str:
        size = f'{len(self)} images, {len(self.classes)} classes' if self._fully_initialized else 'not loaded'
        return (f'{type(self).__name__}(data_root={self._raw_root!r}, split={self.split!r}, '
                f'ann_file={self.ann_file!r}, {size})')
