"""Classification transforms and the repeated-augmentation sampler (registered in mmdet's registries).

A sample flows ``dict(img_path=... | img=..., gt_label=int)`` -> ``LoadImagePIL`` -> ``TimmClsTransform`` ->
``PackClsInputs`` -> ``dict(inputs=uint8 (3, H, W) tensor, data_samples=ScaleNetClsDataSample(gt_label=...))``.
As in timm's GPU prefetcher path, images stay uint8 until the data preprocessor of ``ScaleNetClassifier``
normalises them and applies random erasing and Mixup / CutMix on the batch.
"""
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import DATA_SAMPLERS, TRANSFORMS
from mmengine.dist import get_dist_info
from PIL import Image
from timm.data import create_transform
from timm.data.distributed_sampler import RepeatAugSampler

from .cls_data_sample import ScaleNetClsDataSample
from .errors import ImageReadError


@TRANSFORMS.register_module()
class LoadImagePIL(BaseTransform):
    """Read ``results['img_path']`` into an RGB PIL image ``results['img']`` (or convert an array already there)."""

    def transform(self, results: Dict[str, Any]) -> Dict[str, Any]:
        img = results.get('img')
        if img is None:
            path = results['img_path']
            try:
                with open(path, 'rb') as f:
                    img = Image.open(f).convert('RGB')
            except (OSError, SyntaxError, ValueError) as err:   # PIL: truncated / empty / not an image
                raise ImageReadError(f'cannot read image {path}: {err}') from None
        elif isinstance(img, np.ndarray):
            img = Image.fromarray(img).convert('RGB')
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@TRANSFORMS.register_module()
class TimmClsTransform(BaseTransform):
    """timm's ``create_transform`` in its prefetcher form: PIL image -> augmented uint8 (3, H, W) tensor.

    Training defaults are DeiT's: RandomResizedCrop (bicubic), horizontal flip, RandAugment
    ``rand-m9-mstd0.5-inc1``. Evaluation: resize to ``input_size / crop_pct``, centre crop. Normalisation and
    random erasing are left to the data preprocessor (batched, on the device), as in timm's prefetcher.
    Any other keyword is passed on to ``timm.data.create_transform``.
    """

    def __init__(self, input_size: Union[int, Tuple[int, int]] = 224, is_training: bool = True,
                 auto_augment: Optional[str] = 'rand-m9-mstd0.5-inc1', interpolation: str = 'bicubic',
                 crop_pct: Optional[float] = None, **kwargs):
        self.kwargs = dict(input_size=input_size, is_training=is_training, interpolation=interpolation, **kwargs)
        if is_training:
            self.kwargs['auto_augment'] = auto_augment
        else:
            self.kwargs['crop_pct'] = crop_pct
        self.timm_transform = guard_posterize(create_transform(use_prefetcher=True, **self.kwargs))

    def transform(self, results: Dict[str, Any]) -> Dict[str, Any]:
        img = results['img']
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img).convert('RGB')
        out = self.timm_transform(img)
        results['img'] = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(out))
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.kwargs})'


def posterize_any_bits(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's ``posterize`` for every bit count its RandAugment draws: 0 bits (magnitude 10 of
    ``PosterizeIncreasing``, ~1 image in 2,000 with ``rand-m9-mstd0.5``) gives the black image Pillow < 13 gave,
    where Pillow 13 raises ``ValueError: bits must be between or equal to 1 and 8``."""
    from PIL import ImageOps
    bits = int(bits_to_keep)
    if bits >= 8:
        return img
    if bits <= 0:
        return Image.new(img.mode, img.size)   # every bit dropped: zeros
    return ImageOps.posterize(img, bits)


def guard_posterize(transform: Any) -> Any:
    """Replace timm's ``posterize`` by :func:`posterize_any_bits` in every augmentation op of ``transform``
    (RandAugment ``ops``, AutoAugment ``policy``, AugMix ``ops``, nested ``transforms``); returns ``transform``."""
    from timm.data import auto_augment
    stack, seen = [transform], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, 'aug_fn', None) is auto_augment.posterize:
            node.aug_fn = posterize_any_bits
        for attr in ('transforms', 'ops', 'policy'):
            children = getattr(node, attr, None)
            if isinstance(children, (list, tuple)):
                stack.extend(children)
    return transform


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """``results`` -> ``dict(inputs=(3, H, W) tensor, data_samples=ScaleNetClsDataSample(gt_label=LongTensor[1]))``."""

    meta_keys = ('img_path', 'sample_idx')

    def transform(self, results: Dict[str, Any]) -> Dict[str, Any]:
        img = results['img']
        if isinstance(img, np.ndarray):
            img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1) if img.ndim == 3 else img[None]))
        sample = ScaleNetClsDataSample(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if results.get('gt_label') is not None:
            sample.gt_label = torch.tensor([int(results['gt_label'])], dtype=torch.long)
        return dict(inputs=img, data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@DATA_SAMPLERS.register_module()
class ScaleNetRepeatAugSampler(RepeatAugSampler):
    """DeiT's repeated-augmentation sampler (timm's ``RepeatAugSampler``) with mmengine's dist info and seed.

    Each image is drawn ``num_repeats`` times per epoch, the copies landing on different ranks; an epoch still
    yields about ``len(dataset)`` samples in total.
    """

    def __init__(self, dataset, shuffle: bool = True, num_repeats: int = 3, seed: Optional[int] = None,
                 selected_round: int = 256):
        rank, world_size = get_dist_info()
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, num_repeats=num_repeats,
                         selected_round=selected_round)
        self.seed = int(seed) if seed is not None else 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        # timm seeds its permutation with the epoch; offset by the run's seed
        self.epoch = self.seed * 100003 + epoch


def build_pipeline(pipeline: Optional[Sequence[Union[Dict[str, Any], Any]]]):
    """A list of transform configs / callables -> mmengine ``Compose`` (configs built from mmdet's registry, so
    no default scope is needed)."""
    from mmengine.dataset import Compose
    return Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t for t in (pipeline or [])])
