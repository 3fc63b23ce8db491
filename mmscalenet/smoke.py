"""Shrink any shipped config to a CPU smoke run: a tiny backbone of the same family (grown, if the config grows),
small images, a few samples of the config's own data, two images a batch, the shortest schedule, no pretrained
weights (a tiny model has none), fp32. The shrink is a set of ``--cfg-options`` computed from the config itself
(pipeline transforms found by their type, neck and head widths from the tiny backbone's), so it follows the
config instead of list indices copied from it:

    python tools/train.py CONFIG --smoke                     # work dir work_dirs/smoke/CONFIG_NAME
    python tools/test.py CONFIG CHECKPOINT --smoke
    python $MMDET_TOOLS/train.py CONFIG --cfg-options $(python -m mmscalenet.smoke CONFIG)   # mmdet's own tools

The data must be where the config looks (``data/coco``, ...); only the first samples of each split are read.
"""
import sys
from typing import Any, Dict, List, Mapping, Optional

TINY_VIT = dict(embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2.0)
TINY_SWIN = dict(embed_dims=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=4)
GROWN_VIT_DEPTH = 8                  # TINY_VIT grown 2x, for a config that grows
GROWN_SWIN_DEPTHS = (1, 1, 4, 1)
SAMPLES = {'train': 4, 'val': 2, 'test': 2}
# pipeline transforms (also nested, as in RandomChoice) and their size arguments
_SCALES = ('Resize', 'RandomResize', 'RandomChoiceResize', 'FixScaleResize')


def _is_classifier(cfg) -> bool:
    return str((cfg.get('model', None) or {}).get('type', '')).split('.')[-1] == 'ScaleNetClassifier'


def _scaled(value: Any, size: int) -> Any:
    """A resize scale (w, h) (or a list of them) with its shorter side brought to ``size``, aspect kept."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        return [_scaled(v, size) for v in value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        factor = size / min(value)
        return tuple(max(size, int(round(v * factor))) for v in value)
    return (size, size)


def _transforms(node: Any, where: str, size: int, out: Dict[str, Any]) -> None:
    """Size arguments of every transform in a pipeline (nested lists included) set for ``size``-pixel images."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _transforms(item, f'{where}.{i}', size, out)
        return
    if not isinstance(node, Mapping):
        return
    kind = str(node.get('type', '')).split('.')[-1]
    if kind in _SCALES:
        for key in ('scale', 'scales'):
            if key in node:
                out[f'{where}.{key}'] = _scaled(node[key], size)
    elif kind == 'RandomCrop' and 'crop_size' in node:
        out[f'{where}.crop_size'] = (size, size)
    elif kind == 'Pad' and node.get('size') is not None:
        out[f'{where}.size'] = (size, size)
    elif kind == 'TimmClsTransform':
        out[f'{where}.input_size'] = size
    for key in ('transforms',):   # RandomChoice, RandomApply, ...
        if key in node:
            _transforms(node[key], f'{where}.{key}', size, out)


def _rescaled_indices(indices: Any, old: int, new: int) -> Any:
    """Layer indices of a depth-``old`` ViT (out_indices, global_indices) at the same relative places in ``new``."""
    if not isinstance(indices, (list, tuple)) or not all(isinstance(i, int) for i in indices):
        return indices
    return tuple(min(new - 1, max(0, round((i % old + 1) * new / old) - 1)) for i in indices)


def _backbone(bb: Mapping[str, Any], key: str, size: int, out: Dict[str, Any]) -> List[int]:
    """Options for a tiny backbone of ``bb``'s family; returns the channels of its outputs (per out index)."""
    kind = str(bb.get('type', '')).split('.')[-1]
    if kind == 'ScaleNetSwin':
        out[f'{key}.arch._delete_'] = True
        out.update({f'{key}.arch.{k}': v for k, v in TINY_SWIN.items()})
        if bb.get('depths') is not None:
            out[f'{key}.depths'] = GROWN_SWIN_DEPTHS
        indices = bb.get('out_indices', (3,))
        out[f'{key}.img_size'] = size
        return [TINY_SWIN['embed_dims'] * 2 ** i for i in (indices if isinstance(indices, (list, tuple)) else [3])]
    if kind != 'ScaleNetViT':
        raise ValueError(f'--smoke shrinks ScaleNetViT and ScaleNetSwin backbones; {key}.type is {kind!r}')
    from .models.vit import ARCHS
    arch = bb.get('arch', 'deit-small')
    base = arch['num_layers'] if isinstance(arch, Mapping) else ARCHS[str(arch).lower()]['num_layers']
    old = bb.get('depth') or base
    new = TINY_VIT['num_layers'] if old == base else GROWN_VIT_DEPTH
    out[f'{key}.arch._delete_'] = True
    out.update({f'{key}.arch.{k}': v for k, v in TINY_VIT.items()})
    if bb.get('depth') is not None:
        out[f'{key}.depth'] = new
    for name in ('out_indices', 'global_indices'):
        if isinstance(bb.get(name), (list, tuple)):
            out[f'{key}.{name}'] = _rescaled_indices(bb[name], old, new)
    if 'img_size' in bb:
        out[f'{key}.img_size'] = size
    if bb.get('window_size'):
        out[f'{key}.window_size'] = 2
    indices = bb.get('out_indices', (-1,))
    return [TINY_VIT['embed_dims']] * (len(indices) if isinstance(indices, (list, tuple)) else 1)


def _heads(model: Mapping[str, Any], channels: List[int], out: Dict[str, Any]) -> None:
    """Neck and (mmseg) decode heads whose input widths follow the backbone's outputs."""
    neck = model.get('neck') or {}
    if isinstance(neck, Mapping) and neck:
        if 'backbone_channel' in neck:
            out['model.neck.backbone_channel'] = channels[0]
        if isinstance(neck.get('in_channels'), (list, tuple)):
            out['model.neck.in_channels'] = list(channels[:len(neck['in_channels'])])
        elif isinstance(neck.get('in_channels'), int):
            out['model.neck.in_channels'] = channels[0]
    if 'decode_head' not in model:
        return
    width = channels
    if isinstance(neck, Mapping) and neck.get('out_channels') and 'decode_head' in model:
        out['model.neck.out_channels'] = channels[0]
        width = [channels[0]] * len(channels)
    head = model['decode_head']
    if isinstance(head.get('in_channels'), (list, tuple)):
        out['model.decode_head.in_channels'] = list(width[:len(head['in_channels'])])
    out['model.decode_head.channels'] = 16
    aux = model.get('auxiliary_head')
    if isinstance(aux, Mapping) and aux:
        out['model.auxiliary_head.in_channels'] = width[min(aux.get('in_index', 2), len(width) - 1)]
        out['model.auxiliary_head.channels'] = 8


def _proposals(model: Mapping[str, Any], out: Dict[str, Any]) -> None:
    """A two-stage detector's proposal and sample counts (1000s at full size) cut to what 64-pixel images hold."""
    train, test = model.get('train_cfg') or {}, model.get('test_cfg') or {}
    if isinstance(train.get('rpn_proposal'), Mapping):
        out['model.train_cfg.rpn_proposal.max_per_img'] = 64
    if isinstance((train.get('rcnn') or {}).get('sampler'), Mapping):
        out['model.train_cfg.rcnn.sampler.num'] = 64
    if isinstance(test.get('rpn'), Mapping):
        out['model.test_cfg.rpn.max_per_img'] = 64
    if isinstance(test.get('rcnn'), Mapping):   # score 0: a detector trained for 2 iterations still gives metrics
        out.update({'model.test_cfg.rcnn.max_per_img': 10, 'model.test_cfg.rcnn.score_thr': 0.0})


def smoke_options(cfg, gpu: Optional[bool] = None) -> Dict[str, Any]:
    """The ``--cfg-options`` (key -> value) that shrink ``cfg`` to a smoke run; see the module's docstring."""
    from .tools_common import _pretrained_files
    out: Dict[str, Any] = {}
    model = cfg.get('model', None) or {}
    size = 32 if _is_classifier(cfg) else 64
    key, bb = ('model.backbone', model['backbone']) if model.get('backbone') else ('model', model)
    channels = _backbone(bb, key, size, out)
    _heads(model, channels, out)
    _proposals(model, out)
    for where, _ in _pretrained_files(model, 'model'):
        out[where] = None
    pre = model.get('data_preprocessor') or {}
    if pre.get('pad_size_divisor', 0) > size:
        out['model.data_preprocessor.pad_size_divisor'] = size
    if pre.get('size') is not None:
        out['model.data_preprocessor.size'] = (size, size)
    for i, aug in enumerate(pre.get('batch_augments') or []):
        if isinstance(aug, Mapping) and 'size' in aug:
            out[f'model.data_preprocessor.batch_augments.{i}.size'] = (size, size)
    by_epoch = _loaders(cfg, size, out)
    _schedule(cfg, by_epoch, out)
    optim = cfg.get('optim_wrapper', None) or {}
    if str(optim.get('type', '')).split('.')[-1] == 'AmpOptimWrapper':
        from .run_checks import amp_device_available
        if not (amp_device_available() if gpu is None else gpu):
            out['optim_wrapper.type'] = 'OptimWrapper'
    return out


def _loaders(cfg, size: int, out: Dict[str, Any]) -> bool:
    """Batch 2, no workers, the first few samples, small images, for every data loader; whether training is by
    epoch (the train loop's kind)."""
    from mmengine.dataset import BaseDataset

    from .tools_common import _lookup
    for split, count in SAMPLES.items():
        loader = cfg.get(f'{split}_dataloader', None)
        if not isinstance(loader, Mapping):
            continue
        out.update({f'{split}_dataloader.batch_size': 2, f'{split}_dataloader.num_workers': 0,
                    f'{split}_dataloader.persistent_workers': False})
        dataset, where = loader.get('dataset') or {}, f'{split}_dataloader.dataset'
        while isinstance(dataset.get('dataset'), Mapping):   # wrappers (RepeatDataset, ...) hold the real one
            dataset, where = dataset['dataset'], f'{where}.dataset'
        cls = _lookup(str(dataset.get('type', '')))
        if isinstance(cls, type) and issubclass(cls, BaseDataset):
            out[f'{where}.indices'] = count
        _transforms(dataset.get('pipeline') or [], f'{where}.pipeline', size, out)
    train = cfg.get('train_cfg', None) or {}
    return str(train.get('type', '')).startswith('EpochBased') or 'max_epochs' in train or train.get('by_epoch', False)


def _schedule(cfg, by_epoch: bool, out: Dict[str, Any]) -> None:
    if not cfg.get('train_cfg', None):
        return
    if by_epoch:
        out.update({'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1})
    else:
        out.update({'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2})
    hooks = cfg.get('default_hooks', None) or {}
    if 'checkpoint' in hooks:
        out['default_hooks.checkpoint.interval'] = 1 if by_epoch else 2
    if 'logger' in hooks:
        out['default_hooks.logger.interval'] = 1


def format_options(options: Mapping[str, Any]) -> List[str]:
    """``KEY=VALUE`` items in mmengine's ``--cfg-options`` syntax (tuples ``(a,b)``, lists ``[a,b]``)."""
    def text(value: Any) -> str:
        if isinstance(value, tuple):
            return '(' + ','.join(text(v) for v in value) + (',)' if len(value) == 1 else ')')
        if isinstance(value, list):
            return '[' + ','.join(text(v) for v in value) + ']'
        return str(value)
    return [f'{key}={text(value)}' for key, value in options.items()]


def load_smoke_config(path: str, cfg_options: Optional[Mapping[str, Any]] = None):
    """The config at ``path`` shrunk by :func:`smoke_options`, then ``--cfg-options`` (checked) on top."""
    from .tools_common import ToolError, apply_cfg_options, read_config
    cfg = read_config(path)
    try:
        cfg.merge_from_dict(smoke_options(cfg))
    except ValueError as err:
        raise ToolError(f'{path}: {err}') from None
    return apply_cfg_options(cfg, cfg_options, path)


def main(argv=None) -> int:
    """``python -m mmscalenet.smoke CONFIG``: the options on one line, for mmdet's tools' ``--cfg-options``."""
    import argparse

    from .tools_common import ToolError, format_error, read_config
    parser = argparse.ArgumentParser(prog='python -m mmscalenet.smoke', description=main.__doc__)
    parser.add_argument('config')
    args = parser.parse_args(argv)
    try:
        print(' '.join(format_options(smoke_options(read_config(args.config)))))
    except (ToolError, ValueError, KeyError) as err:
        print(format_error(err), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
