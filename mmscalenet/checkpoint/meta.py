"""The ScaleNet metadata record of both backbone families: writing it, reading any version of it, rebuilding the
backbone it describes.

One record (``meta['scalenet']``), flat plain data: ``format_version``, ``family`` (``'vit'`` | ``'swin'``), the
backbone's own ``config()`` and its run-time arguments (``drop_path_rate``; the ViT's ``out_indices``). The ViT keeps
the spellings its files always had: its plan (``config()['mapping']``) as ``sources`` next to ``base_depth``, no
``depth`` (``len(sources)``). Records written before (format 1) still read: a ViT's is the same without ``family``;
a Swin's was ``{'backbone': 'ScaleNetSwin', 'config': config()}``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

from ..models.swin import SWIN_CONFIG_KEYS, ScaleNetSwin
from ..models.vit import CONFIG_KEYS, ScaleNetViT, plain_data
from .io import FORMAT_VERSION, CheckpointError

#: family -> (backbone class, keys of its ``config()``, run-time keys recorded beside it)
FAMILIES: Dict[str, Tuple[type, Tuple[str, ...], Tuple[str, ...]]] = {
    'vit': (ScaleNetViT, CONFIG_KEYS, ('out_indices', 'drop_path_rate')),
    'swin': (ScaleNetSwin, SWIN_CONFIG_KEYS, ('drop_path_rate',)),
}
_LEGACY_BACKBONES = {'ScaleNetViT': 'vit', 'ScaleNetSwin': 'swin'}   # format 1's ``backbone`` field


class Record(NamedTuple):
    """A metadata record read back: the family, its ``config()`` (``None`` for a ViT record of a depth plan only,
    written before whole models were recorded) and the run-time arguments."""
    family: str
    config: Optional[Dict[str, Any]]
    runtime: Dict[str, Any]

    @property
    def backbone(self) -> str:
        return FAMILIES[self.family][0].__name__


def scalenet_meta(model) -> Dict[str, Any]:
    """``meta['scalenet']`` of ``model`` (either family): plain data (JSON types) that rebuilds its tensors."""
    cls, _, runtime_keys = FAMILIES[model.family]
    meta = {'format_version': FORMAT_VERSION, 'family': model.family, **model.config()}
    if model.family == 'vit':   # the ViT's file spelling of its plan (see the module docstring)
        meta['sources'] = meta.pop('mapping')
        del meta['depth']
        meta['base_depth'] = model.growth_plan.base_depth   # the depth the sources index (= plan's for 'shared')
    runtime = {'out_indices': list(model.out_indices), 'drop_path_rate': float(model.drop_path_rate)}
    meta.update({k: runtime[k] for k in runtime_keys})
    return plain_data(meta)


def family_of(meta: Mapping[str, Any], name: str = 'the checkpoint') -> Optional[str]:
    """The family a metadata record describes, ``None`` for no record; an unknown family is refused."""
    if not meta:
        return None
    family = meta.get('family')
    if family is None and 'backbone' in meta:
        family = _LEGACY_BACKBONES.get(meta['backbone'], meta['backbone'])
    family = 'vit' if family is None else family
    if family not in FAMILIES:
        raise CheckpointError(f'{name}: its ScaleNet metadata names backbone family {family!r}; this mmscalenet '
                              f'knows {sorted(FAMILIES)}')
    return family


def read_record(meta: Mapping[str, Any], name: str = 'the checkpoint') -> Optional[Record]:
    """Any version of ``meta['scalenet']`` as a :class:`Record` (``None`` without one)."""
    family = family_of(meta, name)
    if family is None:
        return None
    _, config_keys, runtime_keys = FAMILIES[family]
    runtime = {k: meta[k] for k in runtime_keys if meta.get(k) is not None}
    if family == 'swin' and 'family' not in meta:   # format 1: the config nested
        config = meta.get('config')
        if not isinstance(config, Mapping):
            raise CheckpointError(f'{name}: its ScaleNetSwin metadata has no "config" dict (got '
                                  f'{type(config).__name__})')
        return Record(family, dict(config), runtime)
    if family == 'vit':
        if 'arch' not in meta:
            return Record(family, None, runtime)   # a depth plan only
        if 'sources' not in meta:
            raise CheckpointError(f'{name}: its ScaleNet metadata has an arch but no depth plan ("sources")')
        config = {k: meta[k] for k in config_keys if k in meta}   # adapter=None is a value (no adapters)
        config.update(depth=len(meta['sources']), mapping=[int(j) for j in meta['sources']])
        return Record(family, config, runtime)
    return Record(family, {k: meta[k] for k in config_keys if k in meta}, runtime)


def _record_or_refuse(meta: Mapping[str, Any], name: str = 'the checkpoint') -> Record:
    record = read_record(meta, name)
    if record is None or record.config is None:
        raise CheckpointError(f'{name}: carries no ScaleNet metadata (the backbone\'s config): it was not saved with '
                              f'mmscalenet.checkpoint.save_scalenet; build the model from its config instead')
    return record


def model_kwargs_from_meta(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Constructor arguments of the backbone a ScaleNet checkpoint was saved from (its family:
    :func:`family_of`)."""
    record = _record_or_refuse(meta)
    return {**record.config, **record.runtime}


def build_from_meta(meta: Mapping[str, Any], **overrides: Any):
    """A fresh backbone (its family's class) shaped like the one ``meta`` describes; ``overrides`` change any
    argument (another depth / plan drops the saved ViT's plan-dependent outputs)."""
    record = _record_or_refuse(meta)
    cls = FAMILIES[record.family][0]
    runtime = dict(record.runtime)
    if {'depth', 'depths', 'mapping'} & set(overrides):   # another plan: the saved stage outputs no longer apply
        runtime.pop('out_indices', None)
    return cls.from_config(record.config, **{**runtime, **overrides})


def saved_backbone(meta: Mapping[str, Any], name: str = 'the checkpoint'):
    """The backbone that ``meta`` describes, built on the meta device (no memory), or ``None`` without a whole
    model's record. A record that builds no model is refused naming ``name``."""
    record = read_record(meta, name)
    if record is None or record.config is None:
        return None
    try:
        with torch.device('meta'):
            return FAMILIES[record.family][0].from_config(record.config, **record.runtime)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f'{name}: its {record.backbone} metadata does not describe a valid model: '
                              f'{err}') from None
