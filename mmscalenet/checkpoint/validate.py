"""Validation of a file's ScaleNet metadata against its own tensors, before any model is built from it (so a
malformed or hostile record fails with one line naming the file and the field, never with a huge allocation)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Tuple

import torch

from ..expansion import GROWTH_MODES
from .convert import _base_depth_of, _positions_of, check_tensors_fit
from .io import CheckpointError
from .crosscheck import crosscheck_meta
from .meta import family_of, saved_backbone

_MAX_POSITIONS = 4096   # a bound on a file's plan length: the largest plans in use have a few dozen positions


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _meta_field_error(name: str, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f'{name}: ScaleNet metadata field {field!r} {problem}')


def _check_meta_fields(meta: Mapping[str, Any], name: str, base_depth: int) -> None:
    """Types and bounds of every field present, before anything is built from them.

    Metadata with an ``arch`` describes a whole model and must also have ``sources``, ``img_size`` and
    ``patch_size``; without one it is a depth plan only (``sources``, ``base_depth``), checked against
    ``base_depth`` (the file's number of base layers).
    """
    if 'arch' in meta:
        for field in ('sources', 'img_size', 'patch_size'):
            if field not in meta:
                raise _meta_field_error(name, field, 'is missing')
        arch = meta['arch']
        if not isinstance(arch, Mapping):
            raise _meta_field_error(name, 'arch', f'must be a dict, got {type(arch).__name__}')
        for key in ('embed_dims', 'num_layers', 'num_heads'):
            if not _is_int(arch.get(key)) or arch[key] < 1:
                raise _meta_field_error(name, f'arch.{key}', f'must be a positive integer, got {arch.get(key)!r}')
        if not _is_real(arch.get('mlp_ratio', 4.0)) or arch.get('mlp_ratio', 4.0) <= 0:
            raise _meta_field_error(name, 'arch.mlp_ratio', f'must be a finite number > 0, got '
                                                            f'{arch["mlp_ratio"]!r}')
        if arch['embed_dims'] % arch['num_heads']:
            raise _meta_field_error(name, 'arch.num_heads', f'({arch["num_heads"]}) does not divide embed_dims '
                                                            f'({arch["embed_dims"]})')
        base_depth = arch['num_layers']
    if not base_depth:   # a file without base layers (adapters only): bound the plan by its own base_depth
        base_depth = meta.get('base_depth') if _is_int(meta.get('base_depth')) else _MAX_POSITIONS
    L = base_depth
    if 'base_depth' in meta and (not _is_int(meta['base_depth']) or meta['base_depth'] != L):
        raise _meta_field_error(name, 'base_depth', f'({meta["base_depth"]!r}) differs from the number of base '
                                                    f'layers ({L})')
    sources = meta.get('sources', [])
    if not isinstance(sources, list) or not all(_is_int(j) and 0 <= j < L for j in sources):
        raise _meta_field_error(name, 'sources', f'must be a list of base-layer indices in [0, {L}), got '
                                                 f'{str(sources)[:80]}')
    if 'sources' in meta and not L <= len(sources) <= _MAX_POSITIONS:
        raise _meta_field_error(name, 'sources', f'has {len(sources)} positions; expected {L} to {_MAX_POSITIONS}')
    img = meta.get('img_size', [1, 1])
    if not isinstance(img, list) or len(img) != 2 or not all(_is_int(s) and s >= 1 for s in img):
        raise _meta_field_error(name, 'img_size', f'must be [H, W] positive integers, got {str(img)[:80]}')
    for field in ('patch_size', 'in_channels'):
        if field in meta and (not _is_int(meta[field]) or meta[field] < 1):
            raise _meta_field_error(name, field, f'must be a positive integer, got {meta[field]!r}')
    for field in ('window_size', 'format_version'):
        if field in meta and (not _is_int(meta[field]) or meta[field] < 0):
            raise _meta_field_error(name, field, f'must be an integer >= 0, got {meta[field]!r}')
    if 'growth' in meta and meta['growth'] not in GROWTH_MODES:
        raise _meta_field_error(name, 'growth', f'must be one of {GROWTH_MODES}, got {str(meta["growth"])[:80]!r}')
    for field in ('function_preserving', 'use_rel_pos'):
        if field in meta and not isinstance(meta[field], bool):
            raise _meta_field_error(name, field, f'must be true or false, got {meta[field]!r}')
    if 'drop_path_rate' in meta and not (_is_real(meta['drop_path_rate']) and 0 <= meta['drop_path_rate'] < 1):
        raise _meta_field_error(name, 'drop_path_rate', f'must be a number in [0, 1), got {meta["drop_path_rate"]!r}')
    for field in ('out_indices', 'global_indices'):
        value = meta.get(field)
        if value is not None and (not isinstance(value, list) or not all(_is_int(i) for i in value)):
            raise _meta_field_error(name, field, f'must be a list of integers, got {str(value)[:80]}')
    for field in ('unshared',):
        value = meta.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _meta_field_error(name, field, f'must be a list of names, got {str(value)[:80]}')
    if 'out_type' in meta and not isinstance(meta['out_type'], str):
        raise _meta_field_error(name, 'out_type', f'must be a string, got {meta["out_type"]!r}')
    adapter = meta.get('adapter')
    if adapter is not None:
        if not isinstance(adapter, Mapping) or not isinstance(adapter.get('type'), str):
            raise _meta_field_error(name, 'adapter', f'must be null or a dict with a "type", got {str(adapter)[:80]}')
        for key, value in adapter.items():
            if key in ('bottleneck', 'rank') and (not _is_int(value) or value < 1):
                raise _meta_field_error(name, f'adapter.{key}', f'must be a positive integer, got {value!r}')
            if key in ('scale', 'alpha') and not _is_real(value):
                raise _meta_field_error(name, f'adapter.{key}', f'must be a finite number, got {value!r}')


def _expect_shape(state: Mapping[str, torch.Tensor], key: str, shape: Tuple[int, ...], field: str,
                  name: str) -> None:
    if key not in state:
        raise _meta_field_error(name, field, f'cannot be checked: the file has no tensor {key}')
    if tuple(state[key].shape) != shape:
        raise _meta_field_error(name, field, f'does not match the file\'s tensors: {key} has shape '
                                             f'{tuple(state[key].shape)}, the metadata implies {shape}')


def validate_meta(meta: Any, state: Mapping[str, torch.Tensor], name: str = '<checkpoint>') -> None:
    """Check ScaleNet metadata against the file's own backbone tensors (``state``, the family's names), before
    any model is built.

    A ViT's record: types and bounds of every field, then the sizes they imply (width, MLP width, layers, patch,
    image size) against the tensors that carry them (a record without ``arch``, a depth plan only, gets the type
    checks). Both families: every tensor's shape and dtype against the backbone built on the ``meta`` device (no
    memory). Raises one :class:`CheckpointError` naming ``name`` and the field.
    """
    if not isinstance(meta, Mapping):
        raise CheckpointError(f'{name}: its ScaleNet metadata is a {type(meta).__name__}, not a dict')
    if family_of(meta, name) != 'vit':
        for field in ('format_version',):
            if field in meta and (not _is_int(meta[field]) or meta[field] < 0):
                raise _meta_field_error(name, field, f'must be an integer >= 0, got {meta[field]!r}')
        check_tensors_fit(saved_backbone(meta, name).state_dict(), state, name)
        crosscheck_meta(meta, state, name)   # no unused / missing tensors (adapter, LoRA, gates), meta_sha256
        return
    _check_meta_fields(meta, name, _base_depth_of(state))
    if 'arch' not in meta:
        return   # a depth plan only: nothing to build from it
    arch = meta['arch']
    C, L = arch['embed_dims'], arch['num_layers']
    P, in_ch = meta['patch_size'], meta.get('in_channels', 3)
    _expect_shape(state, 'patch_embed.proj.weight', (C, in_ch, P, P), 'arch.embed_dims / patch_size', name)
    H, W = meta['img_size']
    if H < P or W < P:
        raise _meta_field_error(name, 'img_size', f'{[H, W]} is smaller than patch_size={P}')
    _expect_shape(state, 'pos_embed', (1, 1 + (H // P) * (W // P), C), 'img_size', name)
    hidden = int(C * float(arch.get('mlp_ratio', 4.0)))
    if meta.get('growth', 'shared') != 'shared':   # the progressive foil stores one layer per position
        L = len(meta['sources'])
    for j in range(L):
        _expect_shape(state, f'blocks.{j}.attn.qkv.weight', (3 * C, C), 'arch.num_layers', name)
        _expect_shape(state, f'blocks.{j}.mlp.fc1.weight', (hidden, C), 'arch.mlp_ratio', name)
    if _base_depth_of(state) != L:
        if L != arch['num_layers']:
            raise _meta_field_error(name, 'sources', f'gives {L} copied layers (growth={meta["growth"]!r}) but the '
                                                     f'file holds {_base_depth_of(state)}')
        raise _meta_field_error(name, 'arch.num_layers', f'is {L} but the file holds {_base_depth_of(state)} '
                                                         f'base layers')
    positions = _positions_of(state)
    if positions and positions[-1] >= len(meta['sources']):
        raise _meta_field_error(name, 'sources', f'describes {len(meta["sources"])} positions but the file holds '
                                                 f'parameters of position {positions[-1]}')
    check_tensors_fit(saved_backbone(meta, name).state_dict(), state, name)
    crosscheck_meta(meta, state, name)   # no unused / missing tensors (adapter, LoRA, gates), meta_sha256


