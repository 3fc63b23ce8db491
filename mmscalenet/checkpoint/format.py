"""The ScaleNet file format: ``{'state_dict': unique tensors, 'meta': {'scalenet': {...plan, arch, adapter...}}}``
(``.pth``) or the same tensors with the metadata as JSON (``.safetensors``).

Each shared tensor is stored once and the plan in the metadata says how to re-tie it, so the file round-trips
bit-exactly and safetensors never sees two tensors sharing memory. Here: writing the file, describing a model as
metadata and rebuilding one from it, and reading a file with its checks (SHA-256, metadata against the tensors,
NaN / inf). Loading into a model of another depth is ``load.py``.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from ..models.vit import plain_data
from .convert import _base_depth_of, _positions_of, backbone_state_dict, check_tensors_fit, split_checkpoint
from .crosscheck import crosscheck_meta
from .io import (FORMAT_VERSION, META_KEY, CheckpointError, atomic_save, atomic_write, check_finite,
                 resolve_checkpoint, tensor_digest, verify_digest)


# ---- reading: metadata against the tensors, checksum, finiteness ---------------------------------------------------
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
    """Check ScaleNet metadata against the file's own backbone tensors, before any model is built.

    Types and bounds of every field, then the sizes they imply (width, MLP width, layers, patch, image size)
    against the tensors that carry them, then every tensor's shape and dtype against a model built on the
    ``meta`` device (no memory). Metadata without ``arch`` (a depth plan only) gets the type checks. Raises one
    :class:`CheckpointError` naming ``name`` and the field.
    """
    if not isinstance(meta, Mapping):
        raise CheckpointError(f'{name}: its ScaleNet metadata is a {type(meta).__name__}, not a dict')
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
    for j in range(L):
        _expect_shape(state, f'blocks.{j}.attn.qkv.weight', (3 * C, C), 'arch.num_layers', name)
        _expect_shape(state, f'blocks.{j}.mlp.fc1.weight', (hidden, C), 'arch.mlp_ratio', name)
    if _base_depth_of(state) != L:
        raise _meta_field_error(name, 'arch.num_layers', f'is {L} but the file holds {_base_depth_of(state)} '
                                                         f'base layers')
    positions = _positions_of(state)
    if positions and positions[-1] >= len(meta['sources']):
        raise _meta_field_error(name, 'sources', f'describes {len(meta["sources"])} positions but the file holds '
                                                 f'parameters of position {positions[-1]}')
    try:
        with torch.device('meta'):
            expected = build_from_meta(meta).state_dict()
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f'{name}: its ScaleNet metadata does not describe a valid model: {err}') from None
    check_tensors_fit(expected, state, name)
    crosscheck_meta(meta, state, name)   # no unused / missing tensors (adapter, LoRA, gates), meta_sha256


def _source_name(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else '<state dict>'


def _stored_digest(obj: Any, meta: Mapping[str, Any]) -> Any:
    if 'sha256' in meta:
        return meta['sha256']
    return obj.get('sha256') if isinstance(obj, Mapping) else None


def read_checkpoint(source: Union[str, Mapping[str, Any]], *, allow_nonfinite: bool = False,
                    verify_checksum: bool = True, name: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Load and check a checkpoint: ``(state dict, ScaleNet metadata or {})``.

    On top of :func:`split_checkpoint`: the stored SHA-256 is verified (files without one, written before it
    existed, load as they are; ``verify_checksum=False`` skips it), ScaleNet metadata is validated against the
    file's tensors (:func:`validate_meta`), and NaN / infinite tensors are refused unless ``allow_nonfinite``.
    Every error is one :class:`CheckpointError` naming the file.
    """
    name = name or _source_name(source)
    obj = resolve_checkpoint(source)
    try:
        state, meta = split_checkpoint(obj)
    except CheckpointError as err:
        raise CheckpointError(f'{name}: {err}') from None
    expected = _stored_digest(obj, meta)
    if verify_checksum and expected is not None:
        verify_digest(state, expected, name)
    if meta:
        validate_meta(meta, backbone_state_dict(state)[0], name)
    if not allow_nonfinite:
        check_finite(state, name)
    return state, meta


# ---- describing a model, and rebuilding it -------------------------------------------------------------------------
def scalenet_meta(model) -> Dict[str, Any]:
    """Plain-data description of a ``ScaleNetViT`` (JSON-serialisable), stored beside its unique tensors.

    The model's own :meth:`~mmscalenet.models.vit.ScaleNetViT.config` (its plan ``mapping`` stored as ``sources``,
    next to ``base_depth``, the fields the file's validation and the plan checks read) plus the run-time
    ``out_indices`` / ``drop_path_rate``: everything :func:`build_from_meta` needs to rebuild the same tensors.
    """
    meta = {'format_version': FORMAT_VERSION, **model.config()}
    meta['sources'] = meta.pop('mapping')
    del meta['depth']   # len(sources)
    meta.update(base_depth=model.plan.base_depth, out_indices=list(model.out_indices),
                drop_path_rate=float(model.drop_path_rate))
    return plain_data(meta)


_RUNTIME_KEYS = ('out_indices', 'drop_path_rate')


def _config_and_runtime(meta: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Split a file's metadata into the backbone's ``config()`` and its run-time arguments (files written before
    ``config()`` existed carry the same fields under the same names)."""
    from ..models.vit import CONFIG_KEYS
    if not meta or 'arch' not in meta or 'sources' not in meta:
        raise CheckpointError('the checkpoint carries no ScaleNet metadata (arch, depth plan): it was not saved '
                              'with mmscalenet.checkpoint.save_scalenet; build the model from its config instead')
    cfg = {k: meta[k] for k in CONFIG_KEYS if k in meta}   # adapter=None is a value (no adapters)
    cfg.update(depth=len(meta['sources']), mapping=[int(j) for j in meta['sources']])
    runtime = {k: meta[k] for k in _RUNTIME_KEYS if meta.get(k) is not None}
    return cfg, runtime


def model_kwargs_from_meta(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """``ScaleNetViT`` keyword arguments that rebuild the model a ScaleNet checkpoint was saved from."""
    cfg, runtime = _config_and_runtime(meta)
    return {**cfg, **runtime}


def build_from_meta(meta: Mapping[str, Any], **overrides: Any):
    """A fresh ``ScaleNetViT`` shaped like the one described by ``meta`` (``overrides`` change any argument)."""
    from ..models.vit import ScaleNetViT
    cfg, runtime = _config_and_runtime(meta)
    if 'depth' in overrides or 'mapping' in overrides:   # another plan: the saved stage outputs no longer apply
        runtime.pop('out_indices', None)
    return ScaleNetViT.from_config(cfg, **{**runtime, **overrides})

# ---- writing ------------------------------------------------------------------------------------------------------
def unique_state_dict(model) -> Dict[str, torch.Tensor]:
    """Detached, contiguous copies of ``model``'s tensors: no two entries share memory (safetensors-safe).

    ``ScaleNetViT`` registers each shared tensor once (``blocks.*``), so nothing is lost; the sharing between
    positions is structural and comes back when the model is rebuilt from the plan.
    """
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}


def save_scalenet(model, path: str, head: Optional[Mapping[str, torch.Tensor]] = None,
                  extra_meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``model``'s unique tensors (+ optional classifier head) and its plan, atomically.

    ``.safetensors`` paths get a safetensors file (metadata as JSON), anything else a ``torch.save`` file that loads
    with ``weights_only=True``.
    """
    state = unique_state_dict(model)
    for k, v in (head or {}).items():
        state[f'head.{k}'] = v.detach().clone().contiguous()
    meta = {META_KEY: scalenet_meta(model)}
    if extra_meta:
        meta.update(plain_data(dict(extra_meta)))
    if os.fspath(path).endswith('.safetensors'):
        save_safetensors(state, meta[META_KEY], path)
    else:
        meta[META_KEY]['sha256'] = tensor_digest(state)
        atomic_save({'state_dict': state, 'meta': meta}, path)


def save_safetensors(state: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]], path: str,
                     meta_key: str = META_KEY) -> None:
    """safetensors refuses tensors that share memory; ScaleNet stores each shared tensor once, so none do.

    The tensors' SHA-256 (:func:`tensor_digest`) goes into the ScaleNet metadata (``meta_key`` ``scalenet``) or,
    for other metadata, into its own ``sha256`` entry; loading checks it.
    """
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    digest = tensor_digest(tensors)
    metadata = {'sha256': digest}
    if meta is not None:
        meta = plain_data(dict(meta))
        if meta_key == META_KEY:
            meta['sha256'] = digest
            del metadata['sha256']
        metadata[meta_key] = json.dumps(meta)
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))
