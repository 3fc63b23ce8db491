"""Checkpoints: safe loading, key conversion (timm / DeiT / MAE / mmpretrain / detector), the ScaleNet format.

Pure torch at import time (timm only for ``timm:NAME`` sources, mmengine only inside
:func:`install_mmengine_safe_load`). Every load uses ``torch.load(weights_only=True)``: a file that carries pickled
objects other than tensors, plain containers and an explicit allow-list of data types is refused, and its payload
never runs.

The ScaleNet format is ``{'state_dict': unique tensors, 'meta': {'scalenet': {...plan, arch, adapter...}}}``
(``.pth``) or the same tensors with the metadata as JSON (``.safetensors``): each shared tensor is stored once and
the plan in the metadata says how to re-tie it, so the file round-trips bit-exactly and safetensors never sees two
tensors sharing memory. A checkpoint saved at one depth loads into a model of another depth (same base layers):
per-position parameters follow their base layer (the k-th position that runs layer j takes the k-th such position's
parameters), positions without a counterpart start fresh.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .expansion import DepthPlan, expand_state_dict, make_depth_plan, untie_state_dict
from .utils import log

FORMAT_VERSION = 1
META_KEY = 'scalenet'
# Objects that official DeiT / MAE checkpoints carry besides tensors; plain data, safe to allow.
_SAFE_EXTRA_GLOBALS = [argparse.Namespace]
_POSITION_KEY = re.compile(r'^positions\.(\d+)\.(.+)$')


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not matching the model."""


class NotMergeableError(CheckpointError):
    """The model cannot be written as a plain (untied) timm ViT."""


# ---- reading ---------------------------------------------------------------------------------------------------
def _refusal(path: str, err: Exception) -> CheckpointError:
    text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    m = re.search(r'Unsupported operand (\d+)', text)
    if m:
        return CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt, or a pickle using opcode '
                               f'{m.group(1)}, which safe loading does not allow); nothing in it was executed')
    if 'GLOBAL' in text or 'Unsupported' in text or 'Can only' in text or 'Weights only' in text:
        return CheckpointError(
            f'refused to load {path}: it carries pickled objects that are not tensors or plain data '
            f'({_unsupported_global(err) or first}). Loading it could run code stored in the file, so nothing in it '
            f'was executed. If you made the file yourself and trust it, re-save its tensors as a plain state dict '
            f'(or as .safetensors).')
    return CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {first}')


def _torch_load_safe(path: str, map_location: Any = 'cpu', extra_globals: Sequence[Any] = ()) -> Any:
    """``torch.load(weights_only=True)`` with clear errors; ``extra_globals`` are allowed for this call only."""
    try:
        with torch.serialization.safe_globals(list(_SAFE_EXTRA_GLOBALS) + list(extra_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError,
            TypeError, IndexError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _refusal(path, err) from None


def safe_load(path: str) -> Any:
    """Load a ``.pth`` / ``.pt`` / ``.safetensors`` file without executing any pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        return _load_safetensors(path)
    return _torch_load_safe(path)


def _unsupported_global(err: Exception) -> Optional[str]:
    m = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(err))
    return f'unsupported type {m.group(1)}' if m else None


def _load_safetensors(path: str) -> Dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open
    try:
        tensors = load_file(path, device='cpu')
        with safe_open(path, framework='pt') as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path} is not a readable safetensors file: {err}') from None
    out: Dict[str, Any] = {'state_dict': tensors}
    if 'sha256' in metadata:
        out['sha256'] = metadata['sha256']
    if META_KEY in metadata:
        try:
            out['meta'] = {META_KEY: json.loads(metadata[META_KEY])}
        except json.JSONDecodeError as err:
            raise CheckpointError(f'{path}: its "{META_KEY}" metadata is not valid JSON ({err})') from None
    return out


def resolve_checkpoint(source: Union[str, Mapping[str, Any]]) -> Any:
    """A loaded object from a path, an ``http(s)://`` URL, ``timm:NAME`` (timm's pretrained weights), or a dict."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a path, URL, "timm:NAME" or a state dict, got {type(source).__name__}')
    source = os.fspath(source)
    if source.startswith('timm:'):
        return _timm_pretrained_state(source[len('timm:'):])
    if source.startswith(('http://', 'https://')):
        try:
            return torch.hub.load_state_dict_from_url(source, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as err:
            raise _refusal(source, err) from None
    return safe_load(source)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (DNS included)."""
    import socket
    import urllib.parse
    parsed = urllib.parse.urlparse(url)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == 'http' else 443)
    if not host:
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _timm_pretrained_state(name: str) -> Dict[str, torch.Tensor]:
    """timm's pretrained weights for ``name``: from timm's cache, or downloaded when the host answers.

    Without a network (``HF_HUB_OFFLINE=1``, or the weights' host unreachable within 3 s) only cached weights are
    used, and a miss fails at once with one line saying to pass a local file, instead of the hub's minute of
    retries ending in ``LocalEntryNotFoundError``.
    """
    import timm  # real users: timm downloads and caches the weights
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None:
        raise CheckpointError(f'"timm:{name}": timm has no pretrained weights of that name (see '
                              f'timm.list_pretrained())')
    hub = getattr(cfg, 'hf_hub_id', None)
    url = (os.environ.get('HF_ENDPOINT', 'https://huggingface.co') if hub else getattr(cfg, 'url', None)) or ''
    offline = os.environ.get('HF_HUB_OFFLINE', '0').lower() in ('1', 'true', 'yes', 'on') or not _reachable(url)
    if not offline:
        return timm.create_model(name, pretrained=True).state_dict()
    from huggingface_hub import constants
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # the cache only: no request, no retries
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as err:  # noqa: BLE001  (hub / urllib errors of every kind mean: not cached)
        why = type(err).__name__
        raise CheckpointError(f'"timm:{name}" is not in the local cache and {url or "its host"} cannot be reached '
                              f'(offline?; {why}): download the weights where there is a network and pass the '
                              f'local file instead, e.g. init_cfg=dict(type="Pretrained", '
                              f'checkpoint="/path/to/{name}.pth")') from None
    finally:
        constants.HF_HUB_OFFLINE = saved


_MMPRETRAIN_RENAMES = [
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^layers\.(\d+)\.', r'blocks.\1.'),
    (r'^ln1\.', 'norm.'),
]


def split_checkpoint(obj: Any) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Unwrap ``model`` / ``state_dict`` / ``module`` containers; returns (state dict, ScaleNet metadata or {})."""
    meta: Dict[str, Any] = {}
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if isinstance(obj.get('meta'), Mapping) and META_KEY in obj['meta']:
            if not isinstance(obj['meta'][META_KEY], Mapping):
                raise CheckpointError(f'its ScaleNet metadata is a {type(obj["meta"][META_KEY]).__name__}, not a '
                                      f'dict')
            meta = dict(obj['meta'][META_KEY])
        for key in ('state_dict', 'model', 'module'):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError('the checkpoint holds no state dict (expected tensors, or a dict with "model" or '
                              '"state_dict")')
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError('the checkpoint state dict holds no tensors')
    version = meta.get('format_version', FORMAT_VERSION)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(f'the checkpoint is in ScaleNet format version {version}, newer than this '
                              f'mmscalenet understands ({FORMAT_VERSION}): upgrade mmscalenet')
    return {re.sub(r'^module\.', '', k): v for k, v in tensors.items()}, meta


def backbone_state_dict(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Split into (backbone tensors with timm / ScaleNet names, classifier-head tensors ``head.*``).

    Accepts bare timm / DeiT / MAE dicts, mmpretrain ``backbone.layers.*`` dicts, and ``backbone.``-prefixed
    classifier or detector checkpoints.
    """
    if any(k.startswith('backbone.') for k in state):
        head = {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.')}
        head.update({k[len('head.layers.head.'):]: v for k, v in state.items() if k.startswith('head.layers.head.')})
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    else:
        head = {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.') and k.count('.') == 1}
        state = {k: v for k, v in state.items() if not k.startswith('head')}
    out = {}
    for key, value in state.items():
        for pattern, repl in _MMPRETRAIN_RENAMES:
            new = re.sub(pattern, repl, key)
            if new != key:
                key = new
                break
        out[key] = value
    return out, head


def resize_pos_embed(pos_embed: torch.Tensor, grid: Tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Resize a (1, prefix + h*w, C) position embedding to ``grid`` (bicubic), keeping ``num_prefix`` tokens."""
    prefix, spatial = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    n = spatial.shape[1]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise CheckpointError(f'pos_embed has {n} spatial tokens, which is not a square grid')
    if (side, side) == tuple(grid):
        return pos_embed
    C = spatial.shape[-1]
    spatial = spatial.reshape(1, side, side, C).permute(0, 3, 1, 2).float()
    spatial = F.interpolate(spatial, size=tuple(grid), mode='bicubic', align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], C).to(pos_embed.dtype)
    return torch.cat([prefix, spatial], dim=1)


def _resize_rel_pos(table: torch.Tensor, rows: int) -> torch.Tensor:
    """Linearly resize a (2S-1, head_dim) relative-position table to ``rows`` rows (detectron2 style)."""
    return F.interpolate(table.t().unsqueeze(0).float(), size=rows, mode='linear',
                         align_corners=False)[0].t().to(table.dtype).contiguous()


# ---- validation: checksum, finiteness, metadata against the tensors ------------------------------------------------
_MAX_POSITIONS = 4096   # a bound on a file's plan length: the largest plans in use have a few dozen positions


def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name): what the ScaleNet format stores
    as ``sha256`` and checks at load, so a flipped bit anywhere in the tensors is found."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f'{key}\0{t.dtype}\0{tuple(t.shape)}\0'.encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())   # the buffer itself, no copy
    return h.hexdigest()


def verify_digest(state: Mapping[str, torch.Tensor], expected: Any, name: str) -> None:
    """Raise :class:`CheckpointError` naming ``name`` when ``state`` does not hash to ``expected``."""
    if not isinstance(expected, str) or not re.fullmatch(r'[0-9a-f]{64}', expected):
        raise CheckpointError(f'{name}: its sha256 field is malformed ({str(expected)[:80]!r}): the file is damaged '
                              f'(verify_checksum=False / --skip-checksum loads it anyway)')
    actual = tensor_digest(state)
    if actual != expected:
        raise CheckpointError(f'{name}: the tensors do not match the SHA-256 stored in the file (stored '
                              f'{expected[:12]}..., computed {actual[:12]}...): the file is corrupt; '
                              f'verify_checksum=False / --skip-checksum loads it anyway')


def check_finite(state: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise :class:`CheckpointError` listing the tensors of ``state`` that hold NaN or infinite values."""
    bad = [k for k, v in state.items()
           if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ', '.join(bad[:6]) + (f', ... ({len(bad)} in all)' if len(bad) > 6 else '')
        raise CheckpointError(f'{name}: {len(bad)} tensor(s) hold NaN or infinite values ({shown}); refused '
                              f'(allow_nonfinite=True / --allow-nonfinite accepts them)')


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


def check_tensors_fit(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                      name: Optional[str] = None) -> None:
    """Every tensor of ``state`` that ``expected`` has must have its shape, and be floating point where the
    model's is (an integer or bool tensor would be cast silently into a float parameter)."""
    where = f'{name}: ' if name else ''
    for key, value in state.items():
        own = expected.get(key)
        if own is None:
            continue
        if tuple(value.shape) != tuple(own.shape) and not _is_gate_reshape(key, value, own):
            raise CheckpointError(f'{where}tensor {key} has shape {tuple(value.shape)} but the model expects '
                                  f'{tuple(own.shape)}')
        if own.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f'{where}tensor {key} is {str(value.dtype).replace("torch.", "")} but the '
                                  f'model\'s parameter is floating point; refused (it would be cast silently)')


def _is_gate_reshape(key: str, value: torch.Tensor, own: torch.Tensor) -> bool:
    """A residual gate saved as a 0-dim tensor loads into a 1-element gate and back (FSDP2 stores them as (1,))."""
    return key.endswith(('gate_attn', 'gate_mlp')) and value.numel() == own.numel() == 1


def match_gate_shapes(model, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with each 0-dim / 1-element residual gate reshaped to ``model``'s (for ``load_state_dict``)."""
    own = model.state_dict()
    return {k: v.reshape(own[k].shape) if k in own and _is_gate_reshape(k, v, own[k]) else v
            for k, v in state.items()}


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


# ---- loading into a model ----------------------------------------------------------------------------------------
def _base_depth_of(state: Mapping[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state for m in [re.match(r'^blocks\.(\d+)\.', k)] if m}
    return max(layers) + 1 if layers else 0


def _positions_of(state: Mapping[str, torch.Tensor]) -> List[int]:
    return sorted({int(m.group(1)) for k in state for m in [_POSITION_KEY.match(k)] if m})


def _check_compatible(model, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    C = model.embed_dims
    for key in ('patch_embed.proj.weight', 'cls_token', 'pos_embed', 'blocks.0.attn.qkv.weight'):
        if key in state:
            width = state[key].shape[0] if key.startswith(('patch_embed', 'blocks')) else state[key].shape[-1]
            if key.startswith('blocks'):
                width //= 3
            if width != C:
                raise CheckpointError(f'checkpoint width {width} (from {key} {tuple(state[key].shape)}) does not '
                                      f'match the model (embed_dims={C}, arch={model.arch})')
    arch = meta.get('arch')
    if arch and int(arch.get('num_heads', model.num_heads)) != model.num_heads:
        raise CheckpointError(f'checkpoint has {arch["num_heads"]} attention heads but the model has '
                              f'{model.num_heads} (arch={model.arch})')
    L = _base_depth_of(state)
    if meta.get('base_depth') is not None:
        L = int(meta['base_depth'])
    if L and L != model.plan.base_depth:
        raise CheckpointError(f'checkpoint has {L} base layers but the model\'s arch has '
                              f'{model.plan.base_depth}: choose the arch of the checkpoint and grow it with depth=')
    if 'patch_embed.proj.weight' in state and state['patch_embed.proj.weight'].shape[-1] != model.patch_size:
        raise CheckpointError(f'checkpoint patch size {state["patch_embed.proj.weight"].shape[-1]} differs from '
                              f'the model\'s patch_size={model.patch_size}')


def _option_value(value: Any) -> str:
    """A value as mmengine's ``--cfg-options`` parses it back (tuples as ``"(a,b)"``)."""
    if isinstance(value, (list, tuple)):
        return '"(' + ','.join(str(v) for v in value) + (',' if len(value) == 1 else '') + ')"'
    return str(value)


def _mapping_name(sources: Sequence[int], base_depth: int) -> str:
    """'cyclic' / 'interleave' when ``sources`` is that plan, else the explicit list as an option value."""
    for name in ('cyclic', 'interleave'):
        if tuple(make_depth_plan(base_depth, len(sources), name).sources) == tuple(sources):
            return name
    return '"[' + ','.join(str(j) for j in sources) + ']"'


def check_recorded_config(model, meta: Mapping[str, Any], name: str = 'the checkpoint',
                          allow_other_plan: bool = False) -> None:
    """Refuse a ScaleNet checkpoint whose recorded adapter, gates or depth plan differ from ``model``'s.

    One line names both values and the ``--cfg-options`` that would build the checkpoint's model. A checkpoint
    without metadata (timm, DeiT, MAE), or of a plain L-layer model (no growth, adapters or gates), is not checked:
    it is grown to the model's plan. ``allow_other_plan`` accepts another depth plan on purpose
    (continuing at another depth: :func:`remap_positions`); adapters and gates must match either way.
    """
    if not meta:
        return
    sources = meta.get('sources')
    if (sources is not None and list(sources) == list(range(int(meta.get('base_depth', len(sources)))))
            and not meta.get('adapter') and not meta.get('function_preserving')):
        return   # a plain L-layer model saved in the ScaleNet format: grown like a timm checkpoint
    fixes: List[str] = []
    what: List[str] = []
    if 'adapter' in meta:
        saved = _plain(meta['adapter']) if meta['adapter'] else None
        own = _plain(model.adapter_cfg) if model.adapter_cfg else None
        if saved != own:
            what.append(f'adapter {saved} (model: {own})')
            if saved is None:
                fixes.append('model.backbone.adapter=None')
            elif own is None or saved.get('type') != own.get('type'):
                fixes.append(' '.join(f'model.backbone.adapter.{k}={_option_value(v)}' for k, v in saved.items()))
            else:
                fixes.append(' '.join(f'model.backbone.adapter.{k}={_option_value(v)}' for k, v in saved.items()
                                      if own.get(k) != v))
    if 'function_preserving' in meta and bool(meta['function_preserving']) != bool(model.function_preserving):
        what.append(f'function_preserving={bool(meta["function_preserving"])} (model: {model.function_preserving})')
        fixes.append(f'model.backbone.function_preserving={bool(meta["function_preserving"])}')
    other_plan = (sources is not None and not allow_other_plan
                  and tuple(int(j) for j in sources) != tuple(model.plan.sources))
    if other_plan:
        base = int(meta.get('base_depth', model.plan.base_depth))
        what.append(f'depth {len(sources)} with sources {list(sources)} (model: depth {model.plan.depth}, '
                    f'sources {list(model.plan.sources)})')
        fixes.append(f'model.backbone.depth={len(sources)} model.backbone.mapping={_mapping_name(sources, base)}')
    if what:
        raise CheckpointError(
            f'{name} was saved from another ScaleNet backbone than the config builds: {"; ".join(what)}. Build '
            f'the checkpoint\'s backbone with --cfg-options {" ".join(fixes)}'
            + (' (or continue at another depth on purpose with init_cfg.allow_other_plan=True)' if other_plan else ''))


def position_correspondence(old_sources: Sequence[int], new_sources: Sequence[int]) -> Dict[int, int]:
    """``{new position: old position}``: the k-th position running base layer j in the new plan takes the
    per-position parameters of the k-th position running j in the old plan (when there is one)."""
    old: Dict[Tuple[int, int], int] = {}
    count: Dict[int, int] = {}
    for p, j in enumerate(old_sources):
        old[(j, count.get(j, 0))] = p
        count[j] = count.get(j, 0) + 1
    out: Dict[int, int] = {}
    count = {}
    for p, j in enumerate(new_sources):
        k = count.get(j, 0)
        count[j] = k + 1
        if (j, k) in old:
            out[p] = old[(j, k)]
    return out


def remap_positions(state: Mapping[str, torch.Tensor], old_sources: Sequence[int],
                    new_sources: Sequence[int]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Move the per-position tensors of a checkpoint saved with plan ``old_sources`` onto plan ``new_sources``.

    Positions of the new plan without a counterpart get nothing (they keep their fresh initialisation: zero
    adapter up-projections, zero gates, zero rel-pos tables), except their own norms, which are copied from the
    original position of their base layer, like a plain expansion does.
    """
    corr = position_correspondence(old_sources, new_sources)
    originals: Dict[int, int] = {}
    for p, j in enumerate(old_sources):
        originals.setdefault(j, p)
    per_old: Dict[int, Dict[str, torch.Tensor]] = {}
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _POSITION_KEY.match(key)
        if m:
            per_old.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            out[key] = value
    notes = []
    for p, j in enumerate(new_sources):
        if p in corr:
            for rest, value in per_old.get(corr[p], {}).items():
                out[f'positions.{p}.{rest}'] = value
            if corr[p] != p:
                notes.append(f'position {p} <- saved position {corr[p]}')
        elif j in originals:
            for rest, value in per_old.get(originals[j], {}).items():
                if rest.startswith(('norm1.', 'norm2.')):
                    out[f'positions.{p}.{rest}'] = value.clone()
            notes.append(f'position {p} new (layer {j})')
    return out, notes


def convert_for_model(model, state: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]] = None,
                      name: str = 'the checkpoint',
                      allow_other_plan: bool = False) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """Map a timm-layout or ScaleNet-layout backbone state dict onto ``model`` (a ``ScaleNetViT``)."""
    meta = dict(meta or {})
    _check_compatible(model, state, meta)
    check_recorded_config(model, meta, name, allow_other_plan)
    report: Dict[str, List[str]] = {'expanded': [], 'resized': [], 'remapped': []}
    state = dict(state)
    own_layout = any(k.startswith('positions.') for k in state)
    if own_layout:
        saved = _positions_of(state)
        if meta.get('sources') is not None:
            old_sources = [int(j) for j in meta['sources']]
            if tuple(old_sources) != tuple(model.plan.sources):
                state, report['remapped'] = remap_positions(state, old_sources, model.plan.sources)
        elif saved and (saved[-1] >= model.plan.depth or len(saved) != model.plan.depth):
            raise CheckpointError(
                f'the checkpoint holds per-position parameters for {saved[-1] + 1} positions but no depth plan '
                f'(it was not saved in the ScaleNet format), so they cannot be matched to this model\'s '
                f'{model.plan.depth} positions: load it into a model of depth {saved[-1] + 1}, or re-save it with '
                f'mmscalenet.checkpoint.save_scalenet')
    if not own_layout:
        state, rep = expand_state_dict(state, model.plan, model.unshared)
        report['expanded'] = rep['copied']
    elif model.unshared and any(re.match(r'^blocks\.\d+\.norm', k) for k in state):
        # a shared-norm ScaleNet checkpoint into a model with per-position norms: copy along the plan
        norms = {k: v for k, v in state.items() if re.match(r'^blocks\.\d+\.norm', k)}
        expanded, rep = expand_state_dict(norms, model.plan, model.unshared)
        state = {k: v for k, v in state.items() if k not in norms}
        state.update(expanded)
        report['expanded'] = rep['copied']
    if 'pos_embed' in state:
        pe = state['pos_embed']
        n_model = model.pos_embed.shape[1]
        if pe.shape[1] != n_model:
            n = pe.shape[1]
            side = int(round((n - 1) ** 0.5))
            if side * side == n - 1:          # cls slot + grid (timm, DeiT, MAE)
                pe = resize_pos_embed(pe, model.grid, 1)
            elif int(round((n - 2) ** 0.5)) ** 2 == n - 2:   # distilled DeiT: cls + dist slots
                pe = resize_pos_embed(torch.cat([pe[:, :1], pe[:, 2:]], 1), model.grid, 1)
            elif int(round(n ** 0.5)) ** 2 == n:             # no class slot
                pe = torch.cat([pe.new_zeros(1, 1, pe.shape[-1]), resize_pos_embed(pe, model.grid, 0)], 1)
            state['pos_embed'] = pe
            report['resized'].append(f'pos_embed {n} -> {pe.shape[1]} tokens')
    own = model.state_dict()
    for key in list(state):
        value = state[key]
        if key in own and own[key].shape != value.shape:
            if key.endswith(('rel_pos_h', 'rel_pos_w')) and value.dim() == 2 and \
                    value.shape[1] == own[key].shape[1]:
                state[key] = _resize_rel_pos(value, own[key].shape[0])
                report['resized'].append(f'{key} {value.shape[0]} -> {own[key].shape[0]} rows')
                continue
            if _is_gate_reshape(key, value, own[key]):
                state[key] = value.reshape(own[key].shape)
                continue
            raise CheckpointError(f'checkpoint tensor {key} has shape {tuple(value.shape)} but the model expects '
                                  f'{tuple(own[key].shape)}')
    check_tensors_fit(own, state)
    return state, report


def load_into_backbone(model, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False, *,
                       allow_nonfinite: bool = False, verify_checksum: bool = True,
                       name: Optional[str] = None) -> Dict[str, Any]:
    """Load ``checkpoint`` into a ``ScaleNetViT``: expand to the plan, resize positions, log what happened.

    The checkpoint is checked first (:func:`read_checkpoint`: checksum, metadata, no NaN / inf unless
    ``allow_nonfinite``); ``name`` names it in messages (default: its path). A ScaleNet checkpoint must have been
    saved from the backbone the model is (:func:`check_recorded_config`); ``allow_other_plan`` lets it continue at
    another depth plan. A plain checkpoint (no per-position tensors) is grown at load, and said so in the log when
    the model is deeper than it.
    """
    name = name or _source_name(checkpoint)
    state, meta = read_checkpoint(checkpoint, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum,
                                  name=name)
    state, _ = backbone_state_dict(state)
    plain = not any(k.startswith('positions.') for k in state)
    try:
        state, report = convert_for_model(model, state, meta, name, allow_other_plan)
    except CheckpointError as err:
        msg = str(err)
        raise CheckpointError(msg if msg.startswith(name) else f'{name}: {msg}') from None
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing, unexpected = model.load_state_dict(usable, strict=False)
    ignored = sorted(k for k in state if k not in own)
    result = dict(loaded=sorted(usable), expanded=report['expanded'], resized=report['resized'],
                  remapped=report['remapped'], new=sorted(missing), ignored=ignored)
    log(f'ScaleNetViT: loaded {len(usable)} tensors from {name} into a {model.plan.base_depth}->'
        f'{model.plan.depth} layer model; {len(report["expanded"])} copied to per-position tensors, '
        f'{model.plan.depth - model.plan.base_depth} inserted positions share their layers, '
        f'{len(missing)} newly initialised ({_summarise(missing)}), {len(ignored)} ignored '
        f'({_summarise(ignored)}){"; " + ", ".join(report["resized"]) if report["resized"] else ""}'
        f'{"; saved at another depth: " + ", ".join(report["remapped"]) if report["remapped"] else ""}')
    if plain and not meta and model.plan.depth > model.plan.base_depth:
        log(f'ScaleNetViT: {name} is a plain {model.plan.base_depth}-layer checkpoint, grown at load to '
            f'{model.plan.depth} positions: the model starts from it, not from a ScaleNet (ImageNet-stage) '
            f'checkpoint', level=logging.WARNING)
    return result


def _summarise(keys: List[str], limit: int = 4) -> str:
    if not keys:
        return 'none'
    kinds = sorted({re.sub(r'\d+', '*', k) for k in keys})
    return ', '.join(kinds[:limit]) + (f', ... ({len(kinds)} kinds)' if len(kinds) > limit else '')


# ---- the ScaleNet format -----------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: the metadata must survive JSON (safetensors) and ``weights_only`` loading."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def scalenet_meta(model) -> Dict[str, Any]:
    """Plain-data description of a ``ScaleNetViT`` (JSON-serialisable), stored beside its unique tensors.

    Holds everything :func:`build_from_meta` needs to rebuild a model with exactly the same tensors.
    """
    adapter = model.adapter_cfg
    return _plain({
        'format_version': FORMAT_VERSION,
        'arch': dict(model.arch),
        'base_depth': model.plan.base_depth,
        'sources': list(model.plan.sources),
        'adapter': dict(adapter) if adapter else None,
        'unshared': list(model.unshared),
        'function_preserving': bool(model.function_preserving),
        'img_size': list(model.img_size),
        'patch_size': model.patch_size,
        'in_channels': int(model.patch_embed.proj.in_channels),
        'out_type': model.out_type,
        'out_indices': list(model.out_indices),
        'window_size': int(model.window_size),
        'global_indices': list(model.global_indices),
        'use_rel_pos': bool(model.use_rel_pos),
        'drop_path_rate': float(model.drop_path_rate),
    })


def plan_from_meta(meta: Mapping[str, Any]) -> DepthPlan:
    return make_depth_plan(int(meta['base_depth']), len(meta['sources']), list(meta['sources']))


def model_kwargs_from_meta(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """``ScaleNetViT`` keyword arguments that rebuild the model a ScaleNet checkpoint was saved from."""
    if not meta or 'arch' not in meta or 'sources' not in meta:
        raise CheckpointError('the checkpoint carries no ScaleNet metadata (arch, depth plan): it was not saved '
                              'with mmscalenet.checkpoint.save_scalenet; build the model from its config instead')
    kw: Dict[str, Any] = dict(arch=dict(meta['arch']), depth=len(meta['sources']),
                              mapping=[int(j) for j in meta['sources']], adapter=meta.get('adapter'),
                              function_preserving=bool(meta.get('function_preserving', False)),
                              unshared=tuple(meta.get('unshared', ())), img_size=tuple(meta['img_size']),
                              patch_size=int(meta['patch_size']))
    if kw['adapter'] is not None:
        kw['adapter'] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw['adapter'].items()}
    for key in ('in_channels', 'out_type', 'window_size', 'use_rel_pos', 'drop_path_rate'):
        if key in meta:
            kw[key] = meta[key]
    for key in ('out_indices', 'global_indices'):
        if meta.get(key) is not None:
            kw[key] = tuple(meta[key])
    return kw


def build_from_meta(meta: Mapping[str, Any], **overrides: Any):
    """A fresh ``ScaleNetViT`` shaped like the one described by ``meta`` (``overrides`` change any argument)."""
    from .models.vit import ScaleNetViT
    kw = model_kwargs_from_meta(meta)
    if 'depth' in overrides or 'mapping' in overrides:   # another plan: recompute what depends on the depth
        kw['mapping'] = 'cyclic'
        if 'depth' in overrides or not isinstance(overrides['mapping'], str):
            kw.pop('depth')
        for key in ('out_indices', 'global_indices'):
            kw.pop(key, None)
    kw.update(overrides)
    return ScaleNetViT(**kw)


def load_scalenet(source: Union[str, Mapping[str, Any]], strict: bool = True, *, allow_nonfinite: bool = False,
                  verify_checksum: bool = True, **overrides: Any):
    """Rebuild and load a model saved with :func:`save_scalenet` (``.pth`` or ``.safetensors``).

    Without ``overrides`` the model is the saved one, tensor for tensor (``strict``). With ``depth=`` / ``mapping=``
    (or any other ``ScaleNetViT`` argument) it is a new model that continues from the saved one: shared layers
    load as they are, per-position parameters follow their base layer (see :func:`remap_positions`).

    The file is checked before anything is built (:func:`read_checkpoint`); ``allow_nonfinite`` and
    ``verify_checksum`` are passed on to it.

    Returns ``(model, head)``, ``head`` being the classifier-head tensors saved with it (possibly empty).
    """
    name = _source_name(source)
    state, meta = read_checkpoint(source, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
    if 'arch' not in meta:
        raise CheckpointError(f'{name}: carries no ScaleNet metadata (arch, depth plan): it was not saved with '
                              f'mmscalenet.checkpoint.save_scalenet; build the model from its config instead')
    model = build_from_meta(meta, **overrides)
    backbone, head = backbone_state_dict(state)
    if overrides:
        load_into_backbone(model, {'state_dict': {**backbone}, 'meta': {META_KEY: meta}}, allow_other_plan=True,
                           allow_nonfinite=allow_nonfinite, verify_checksum=False, name=name)
        return model, head
    missing, unexpected = model.load_state_dict(match_gate_shapes(model, backbone), strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f'{name}: the checkpoint does not match the model its metadata describes: missing '
                              f'{_summarise(list(missing))}, unexpected {_summarise(list(unexpected))}')
    return model, head


def atomic_write(path: str, write: Callable[[Any], None], suffix: str = '.part') -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    A crash or kill at any point leaves either the previous ``path`` or the complete new one, never half a file
    (the temporary ``.tmp-*`` file of a killed writer is left behind, under a name nothing loads).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.tmp-{os.path.basename(path)}.', suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _os_error_behind(err)
        if cause is not None and cause is not err:   # e.g. torch.save turns "file too large" into a RuntimeError
            raise cause from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _os_error_behind(err: BaseException) -> Optional[OSError]:
    """The ``OSError`` (disk full, file too large) that ``err`` is or was raised while handling, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _file_mode(path: str) -> int:
    """The mode an ordinary ``open(path, 'w')`` would give: the existing file's, else 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


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
        meta.update(_plain(dict(extra_meta)))
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
        meta = _plain(dict(meta))
        if meta_key == META_KEY:
            meta['sha256'] = digest
            del metadata['sha256']
        metadata[meta_key] = json.dumps(meta)
    data = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


# ---- plain timm export -----------------------------------------------------------------------------------------
def timm_kwargs(model, num_classes: int = 0) -> Dict[str, Any]:
    """Arguments of ``timm.models.vision_transformer.VisionTransformer`` for the untied export of ``model``."""
    return dict(img_size=tuple(model.img_size), patch_size=model.patch_size,
                in_chans=int(model.patch_embed.proj.in_channels), embed_dim=model.embed_dims,
                depth=model.plan.depth, num_heads=model.num_heads, mlp_ratio=float(model.arch['mlp_ratio']),
                num_classes=num_classes)


def check_exportable(model) -> None:
    """Raise :class:`NotMergeableError`, saying why, when ``model`` has no exact plain-ViT equivalent."""
    offer = ('Export the shared format instead (tools/export.py SRC DST --format scalenet, or '
             'mmscalenet.checkpoint.save_scalenet): unique tensors + the depth plan + the adapters, loaded with '
             'mmscalenet.')
    cfg = model.adapter_cfg
    if cfg is not None and cfg['type'] == 'ParallelAdapter':
        raise NotMergeableError(
            'cannot export a model with ParallelAdapter adapters as a plain timm ViT: an adapter adds '
            'up(relu(down(h))) beside its sub-layer, and the ReLU between the two projections means no change to '
            'the block\'s own weights computes the same function (only linear adapters such as LoRA merge). '
            + offer)
    if model.window_size or model.use_rel_pos:
        raise NotMergeableError('cannot export window attention or relative-position tables as a plain timm '
                                'ViT: timm\'s VisionTransformer has neither. ' + offer)

    if model.out_type != 'cls_token':
        raise NotMergeableError(
            f'cannot export an out_type={model.out_type!r} backbone as a timm VisionTransformer: it has no class '
            f'token and final norm (export needs out_type="cls_token"). ' + offer)

@torch.no_grad()
def untied_state_dict(model, head: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """A plain timm ``VisionTransformer`` state dict of depth D computing exactly what ``model`` computes.

    Every position gets its own copy of its shared block, with its LoRA deltas merged into the weights, its
    residual gates (function-preserving growth) folded into ``attn.proj`` / ``mlp.fc2``, and its own norms if it
    has them. ``head`` (``weight``, ``bias``) becomes timm's ``head``.
    """
    check_exportable(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith(('blocks.', 'positions.'))}
    for p, pos in enumerate(model.positions):
        block = model.blocks[model.plan.sources[p]]
        norm1 = pos.norm1 if pos.norm1 is not None else block.norm1
        norm2 = pos.norm2 if pos.norm2 is not None else block.norm2
        linears = {'attn.qkv': ('qkv', block.attn.qkv), 'attn.proj': ('proj', block.attn.proj),
                   'mlp.fc1': ('fc1', block.mlp.fc1), 'mlp.fc2': ('fc2', block.mlp.fc2)}
        gates = {'attn.proj': pos.gate_attn, 'mlp.fc2': pos.gate_mlp}
        for name, (short, linear) in linears.items():
            weight = linear.weight.detach().float()
            if pos.lora is not None and short in pos.lora:
                weight = pos.lora[short].merged(weight)
            bias = linear.bias.detach().float()
            gate = gates.get(name)
            if gate is not None:
                weight, bias = weight * gate.detach().float(), bias * gate.detach().float()
            state[f'positions.{p}.{name}.weight'] = weight.to(linear.weight.dtype).contiguous()
            state[f'positions.{p}.{name}.bias'] = bias.to(linear.bias.dtype).contiguous()
        for name, norm in (('norm1', norm1), ('norm2', norm2)):
            state[f'positions.{p}.{name}.weight'] = norm.weight.detach().clone()
            state[f'positions.{p}.{name}.bias'] = norm.bias.detach().clone()
    out = untie_state_dict(state, model.plan)
    if head:
        out['head.weight'] = head['weight'].detach().clone()
        out['head.bias'] = head['bias'].detach().clone()
    return out


def timm_head(head: Mapping[str, torch.Tensor], embed_dims: int) -> Dict[str, torch.Tensor]:
    """Find the linear classifier (``weight`` (K, C), ``bias`` (K,)) among a checkpoint's head tensors."""
    weights = {k: v for k, v in head.items() if k.endswith('weight') and v.dim() == 2 and v.shape[1] == embed_dims}
    if len(weights) != 1:
        return {}
    key, weight = next(iter(weights.items()))
    bias = head.get(key[:-len('weight')] + 'bias')
    if bias is None or bias.shape != weight.shape[:1]:
        bias = weight.new_zeros(weight.shape[0])
    return {'weight': weight, 'bias': bias}


# ---- mmengine integration ----------------------------------------------------------------------------------------
_MMENGINE_INSTALLED = False


def mmengine_safe_globals() -> List[Any]:
    """The non-tensor types mmengine 0.10 writes into its checkpoints (``meta``, ``message_hub``, schedulers).

    Found by saving real mmengine checkpoints (training, resume, ``HistoryBuffer`` logs) and loading them with
    ``weights_only=True``: each entry is plain data. Anything else in a file (a function, ``os.system``, a class
    with a ``__reduce__``) stays refused.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = getattr(np, '_core', None)
    multiarray = multiarray.multiarray if multiarray is not None else np.core.multiarray
    out: List[Any] = [HistoryBuffer, argparse.Namespace, np.ndarray, np.dtype]
    # numpy 1 pickles name numpy.core.multiarray, numpy 2 numpy._core.multiarray: allow both spellings
    for name in ('_reconstruct', 'scalar'):
        fn = getattr(multiarray, name)
        out += [(fn, f'numpy.core.multiarray.{name}'), (fn, f'numpy._core.multiarray.{name}')]
    # dtype classes (numpy.dtypes.Float64DType, ...) and scalar types that meta / HistoryBuffer hold
    for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.bool_, np.complex64, np.complex128, np.str_, np.bytes_):
        out += [type(np.dtype(t)), t]
    # HistoryBuffer pickles its statistics table as getattr(HistoryBuffer, 'mean') etc.: allow exactly that,
    # through a getattr that refuses every other object and attribute (a general getattr would reach any method).
    out += [(_history_buffer_getattr, 'builtins.getattr'), (_history_buffer_getattr, '__builtin__.getattr')]
    return out


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the statistics methods of mmengine's ``HistoryBuffer`` (used while unpickling)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    # its public methods only (min, max, current, mean and registered statistics): they compute on a buffer's data
    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_') and (
            name in vars(HistoryBuffer) or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'Unsupported global: GLOBAL builtins.getattr on {obj!r} (attribute {name!r}): '
                                 f'only HistoryBuffer statistics are allowed')


def _mmengine_load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file checkpoint loader, with ``weights_only=True`` and mmengine's data types allowed."""
    filename = os.path.expanduser(os.fspath(filename))
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if filename.endswith('.safetensors'):
        return _load_safetensors(filename)
    return _torch_load_safe(filename, map_location=map_location)


def _atomic_local_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` writing through a temporary file + rename (checkpoints, ``last_checkpoint``)."""
    atomic_write(filepath, lambda f: f.write(obj))


def _atomic_local_put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
    atomic_write(filepath, lambda f: f.write(obj.encode(encoding)))


class _AtomicTextWriter:
    """A text file opened for writing that appears under its name only when closed without error."""

    def __init__(self, path: str, encoding: Optional[str]):
        self.path, self.encoding, self.parts = path, encoding or 'utf-8', []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def __enter__(self) -> '_AtomicTextWriter':
        return self

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            data = ''.join(self.parts).encode(self.encoding)
            atomic_write(self.path, lambda f: f.write(data))


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """``open`` as seen by mmengine's ``CheckpointHook``: its ``last_checkpoint`` pointer is written atomically
    (a kill leaves the previous pointer or the new one, never an empty file); everything else is ``open``."""
    import builtins
    if mode in ('w', 'wt') and os.path.basename(os.fspath(file)) == 'last_checkpoint':
        return _AtomicTextWriter(os.fspath(file), kwargs.get('encoding'))
    return builtins.open(file, mode, *args, **kwargs)


def install_mmengine_safe_load() -> None:
    """Make mmengine 0.10 load and save checkpoints safely (idempotent; called by ``import mmscalenet``).

    * Loading: mmengine calls ``torch.load(path)`` without ``weights_only``. Its local-file loader (used by
      ``resume``, ``load_from``, ``tools/test.py``, ``init_cfg=Pretrained``) is replaced by one that passes
      ``weights_only=True`` explicitly, and the data types mmengine itself writes (:func:`mmengine_safe_globals`)
      are added to torch's allow-list (``torch.serialization.add_safe_globals``) so other mmengine loaders (URLs)
      accept them too. A file carrying any other pickled object is refused with a :class:`CheckpointError`, and
      nothing in it runs. ``weights_only=False`` is never used.
    * Saving: ``mmengine.fileio.LocalBackend.put`` / ``put_text`` (what ``Runner.save_checkpoint`` goes through)
      write a temporary file and rename it, so a kill during a save leaves the previous checkpoint intact; the
      ``last_checkpoint`` pointer, which ``CheckpointHook`` writes with a plain ``open()``, gets the same treatment
      through an ``open`` placed in that module's namespace (:func:`_checkpoint_hook_open`).
    """
    global _MMENGINE_INSTALLED
    if _MMENGINE_INSTALLED:
        return
    try:
        from mmengine.fileio.backends.local_backend import LocalBackend
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # torch-only installation: nothing to patch
        return
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=_mmengine_load_from_local, force=True)
    LocalBackend.put = _atomic_local_put
    LocalBackend.put_text = _atomic_local_put_text
    try:   # CheckpointHook writes the last_checkpoint pointer with a plain open(): give its module an atomic one
        import mmengine.hooks.checkpoint_hook as checkpoint_hook
        checkpoint_hook.open = _checkpoint_hook_open
    except ImportError:
        pass
    _MMENGINE_INSTALLED = True
