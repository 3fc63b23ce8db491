"""Metadata that lies is refused: ScaleNet metadata against the file's own tensors, and against its own digest.

The SHA-256 a ScaleNet file stores covers its tensors only, so an edited ``meta.scalenet`` (``adapter`` set to
None while the adapter tensors are still there, a plan swapped for another of the same length) went through:
the model built from the lie just ignored the tensors it did not use. Two checks close that:

* :func:`crosscheck_meta`: the model the metadata describes (built on the ``meta`` device: no memory) has exactly
  the file's backbone tensors: none unused, none missing, adapter / LoRA / gate tensors present exactly when the
  metadata says, per-position tensors for exactly the plan's positions, every shape equal.
* :func:`meta_digest` / :func:`verify_meta_digest`: a SHA-256 of the metadata itself (canonical JSON without the
  digest fields), stored as ``meta_sha256`` by writers that call :func:`meta_digest`; a plan that was swapped
  (same tensors, same length) is found only this way. Files without it load as before.

:func:`fit_before_build` does the tensor part for any backbone arguments of either family (a run checkpoint's
metadata, a config), so a tool can refuse a file before it allocates the model it describes.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Dict, List, Mapping

import torch

from .io import CheckpointError
from .meta import saved_backbone

DIGEST_KEY = 'meta_sha256'
_DIGEST_FIELDS = ('sha256', DIGEST_KEY)
_KINDS = (('adapter', re.compile(r'(^|\.)(adapter|adapters)\.')), ('LoRA', re.compile(r'lora_')),
          ('gate', re.compile(r'(^|\.)gate_(attn|mlp)$')))
_POSITION = re.compile(r'^positions\.(\d+)\.')


def _kind(key: str) -> str:
    return next((kind for kind, pattern in _KINDS if pattern.search(key)), 'other')


def _shown(keys: List[str], limit: int = 3) -> str:
    return ', '.join(keys[:limit]) + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def _compare(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], name: str,
             described: str) -> None:
    """Key sets equal and shapes equal, else one :class:`CheckpointError` saying which kind of tensor differs."""
    from .convert import _is_gate_reshape
    unused = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    for keys, verb in ((unused, 'holds tensors that the model its metadata describes does not have'),
                       (missing, 'lacks tensors that the model its metadata describes has')):
        if not keys:
            continue
        kinds = sorted({_kind(k) for k in keys})
        positions = sorted({int(m.group(1)) for k in keys for m in [_POSITION.match(k)] if m})
        where = f' (positions {positions[:6]})' if positions else ''
        raise CheckpointError(f'{name}: the file {verb} ({described}): {len(keys)} {"/".join(kinds)} tensor(s)'
                              f'{where}, e.g. {_shown(keys)}. The metadata does not match the tensors (edited?); '
                              f'refused before anything was built or written')
    for key, value in state.items():
        own = expected[key]
        if tuple(value.shape) != tuple(own.shape) and not _is_gate_reshape(key, value, own):
            raise CheckpointError(f'{name}: tensor {key} has shape {tuple(value.shape)} but the model its metadata '
                                  f'describes ({described}) has {tuple(own.shape)}; refused before allocating')


def _described(model) -> str:
    adapter = getattr(model, 'adapter_cfg', None)
    kind = adapter.get('type') if isinstance(adapter, Mapping) else None
    positions = sum(plan.depth for plan in getattr(model, 'plans', None) or [model.plan])
    return f'{type(model).__name__}, {positions} positions, adapter={kind}'


def crosscheck_meta(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], name: str = '<checkpoint>') -> None:
    """Refuse ScaleNet metadata describing a whole model (either family) whose model does not have exactly the
    tensors of ``state`` (backbone tensors, timm names), or whose stored ``meta_sha256`` does not match it."""
    verify_meta_digest(meta, name)
    if not isinstance(meta, Mapping):
        return
    model = saved_backbone(meta, name)   # on the meta device: no memory
    if model is None:
        return
    _compare(model.state_dict(), state, name, _described(model))


def fit_before_build(kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], name: str = '<checkpoint>',
                     cls: Any = None):
    """Build ``cls(**kwargs)`` (default ``ScaleNetViT``; ``ScaleNetSwin`` alike) on the ``meta`` device and refuse
    ``state`` unless it has exactly that model's tensors and shapes: the sizes a file or config asks for are
    checked before any memory is taken."""
    if cls is None:
        from ..models.vit import ScaleNetViT as cls
    try:
        with torch.device('meta'):
            expected = cls(**dict(kwargs, init_cfg=None)).state_dict()
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f'{name}: cannot build the backbone it describes: {err}') from None
    adapter = kwargs.get('adapter')
    kind = adapter.get('type') if isinstance(adapter, Mapping) else None
    depth = kwargs.get('depths', kwargs.get('depth', '?'))
    _compare(expected, state, name, f'{cls.__name__}, depth {depth}, adapter={kind}')


def meta_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 of ``meta`` as canonical JSON (sorted keys, no whitespace), without ``sha256`` / ``meta_sha256``."""
    body: Dict[str, Any] = {k: v for k, v in meta.items() if k not in _DIGEST_FIELDS}
    text = json.dumps(body, sort_keys=True, separators=(',', ':'), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_meta_digest(meta: Any, name: str = '<checkpoint>') -> None:
    """Refuse ``meta`` when it carries a ``meta_sha256`` that its other fields do not hash to."""
    if not isinstance(meta, Mapping) or DIGEST_KEY not in meta:
        return
    stored = meta[DIGEST_KEY]
    if not isinstance(stored, str) or not re.fullmatch(r'[0-9a-f]{64}', stored):
        raise CheckpointError(f'{name}: its {DIGEST_KEY} field is malformed ({str(stored)[:80]!r})')
    try:
        actual = meta_digest(meta)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{name}: its ScaleNet metadata cannot be hashed ({err})') from None
    if actual != stored:
        raise CheckpointError(f'{name}: its ScaleNet metadata (plan, arch, adapter) does not match the {DIGEST_KEY} '
                              f'stored with it (stored {stored[:12]}..., computed {actual[:12]}...): the metadata '
                              f'was changed after the file was written; refused')
