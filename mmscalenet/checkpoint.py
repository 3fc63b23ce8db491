"""Checkpoints: safe loading, key conversion (timm / DeiT / MAE / mmpretrain / detector), the ScaleNet format.

Pure torch (timm only for ``timm:NAME`` sources). Every load uses ``torch.load(weights_only=True)``: a file that
carries pickled objects other than tensors and plain containers is refused, and its payload never runs.

The ScaleNet format is ``{'state_dict': unique tensors, 'meta': {'scalenet': {...plan, arch, adapter...}}}``:
each shared tensor is stored once; the plan in the metadata says how to re-tie it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .expansion import DepthPlan, expand_state_dict, make_depth_plan
from .utils import log

FORMAT_VERSION = 1
META_KEY = 'scalenet'
# Objects that official DeiT / MAE checkpoints carry besides tensors; plain data, safe to allow.
_SAFE_EXTRA_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not matching the model."""


# ---- reading ---------------------------------------------------------------------------------------------------
def safe_load(path: str) -> Any:
    """Load a ``.pth`` / ``.pt`` / ``.safetensors`` file without executing any pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        return _load_safetensors(path)
    try:
        with torch.serialization.safe_globals(_SAFE_EXTRA_GLOBALS):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if 'GLOBAL' in str(err) or 'Unsupported' in str(err) or 'weights_only' in str(err):
            raise CheckpointError(
                f'refused to load {path}: it carries pickled objects that are not tensors or plain data '
                f'({_unsupported_global(err) or first}). Nothing in it was executed. If you trust the file, '
                f're-save its state dict with plain tensors only.') from None
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {first}') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or truncated?): '
                              f'{str(err).splitlines()[0] if str(err) else type(err).__name__}') from None


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
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f'{path} is not a readable safetensors file: {err}') from None
    out: Dict[str, Any] = {'state_dict': tensors}
    if META_KEY in metadata:
        out['meta'] = {META_KEY: json.loads(metadata[META_KEY])}
    return out


def resolve_checkpoint(source: Union[str, Mapping[str, Any]]) -> Any:
    """A loaded object from a path, an ``http(s)://`` URL, ``timm:NAME`` (timm's pretrained weights), or a dict."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a path, URL, "timm:NAME" or a state dict, got {type(source).__name__}')
    source = os.fspath(source)
    if source.startswith('timm:'):
        import timm  # real users: timm downloads and caches the weights
        name = source[len('timm:'):]
        return timm.create_model(name, pretrained=True).state_dict()
    if source.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(source, map_location='cpu', weights_only=True)
    return safe_load(source)


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


# ---- loading into a model ----------------------------------------------------------------------------------------
def _base_depth_of(state: Mapping[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state for m in [re.match(r'^blocks\.(\d+)\.', k)] if m}
    return max(layers) + 1 if layers else 0


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
    if L and L != model.plan.base_depth:
        raise CheckpointError(f'checkpoint has {L} base layers but the model\'s arch has '
                              f'{model.plan.base_depth}: choose the arch of the checkpoint and grow it with depth=')
    if 'patch_embed.proj.weight' in state and state['patch_embed.proj.weight'].shape[-1] != model.patch_size:
        raise CheckpointError(f'checkpoint patch size {state["patch_embed.proj.weight"].shape[-1]} differs from '
                              f'the model\'s patch_size={model.patch_size}')


def convert_for_model(model, state: Mapping[str, torch.Tensor],
                      meta: Optional[Mapping[str, Any]] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """Map a timm-layout or ScaleNet-layout backbone state dict onto ``model`` (a ``ScaleNetViT``)."""
    meta = dict(meta or {})
    _check_compatible(model, state, meta)
    report: Dict[str, List[str]] = {'expanded': [], 'resized': []}
    state = dict(state)
    own_layout = any(k.startswith('positions.') for k in state)
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
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f'checkpoint tensor {key} has shape {tuple(value.shape)} but the model expects '
                                  f'{tuple(own[key].shape)}')
    return state, report


def load_into_backbone(model, checkpoint: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Load ``checkpoint`` into a ``ScaleNetViT``: expand to the plan, resize positions, log what happened."""
    name = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else '<state dict>'
    state, meta = split_checkpoint(resolve_checkpoint(checkpoint))
    state, _ = backbone_state_dict(state)
    state, report = convert_for_model(model, state, meta)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing, unexpected = model.load_state_dict(usable, strict=False)
    ignored = sorted(k for k in state if k not in own)
    result = dict(loaded=sorted(usable), expanded=report['expanded'], resized=report['resized'],
                  new=sorted(missing), ignored=ignored)
    log(f'ScaleNetViT: loaded {len(usable)} tensors from {name} into a {model.plan.base_depth}->'
        f'{model.plan.depth} layer model; {len(report["expanded"])} copied to per-position tensors, '
        f'{model.plan.depth - model.plan.base_depth} inserted positions share their layers, '
        f'{len(missing)} newly initialised ({_summarise(missing)}), {len(ignored)} ignored '
        f'({_summarise(ignored)}){"; " + ", ".join(report["resized"]) if report["resized"] else ""}')
    return result


def _summarise(keys: List[str], limit: int = 4) -> str:
    if not keys:
        return 'none'
    kinds = sorted({re.sub(r'\d+', '*', k) for k in keys})
    return ', '.join(kinds[:limit]) + (f', ... ({len(kinds)} kinds)' if len(kinds) > limit else '')


# ---- the ScaleNet format -----------------------------------------------------------------------------------------
def scalenet_meta(model) -> Dict[str, Any]:
    """Plain-data description of a ``ScaleNetViT`` (JSON-serialisable), stored beside its unique tensors."""
    adapter = model.adapter_cfg
    return {
        'format_version': FORMAT_VERSION,
        'arch': dict(model.arch),
        'base_depth': model.plan.base_depth,
        'sources': list(model.plan.sources),
        'adapter': {k: (list(v) if isinstance(v, tuple) else v) for k, v in adapter.items()} if adapter else None,
        'unshared': list(model.unshared),
        'function_preserving': bool(model.function_preserving),
        'img_size': list(model.img_size),
        'patch_size': model.patch_size,
    }


def plan_from_meta(meta: Mapping[str, Any]) -> DepthPlan:
    return make_depth_plan(int(meta['base_depth']), len(meta['sources']), list(meta['sources']))


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.pth', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_scalenet(model, path: str, head: Optional[Mapping[str, torch.Tensor]] = None,
                  extra_meta: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``model``'s unique tensors (+ optional classifier head) and its plan, atomically."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k, v in (head or {}).items():
        state[f'head.{k}'] = v.detach().clone()
    meta = {META_KEY: scalenet_meta(model)}
    if extra_meta:
        meta.update(extra_meta)
    if os.fspath(path).endswith('.safetensors'):
        save_safetensors(state, meta[META_KEY], path)
    else:
        atomic_save({'state_dict': state, 'meta': meta}, path)


def save_safetensors(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: str) -> None:
    """safetensors refuses tensors that share memory; ScaleNet stores each shared tensor once, so none do."""
    from safetensors.torch import save_file
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.safetensors', dir=folder)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={META_KEY: json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def install_mmengine_safe_load() -> None:
    """Placeholder until the reliability issue lands: mmengine checkpoints load with an allow-list."""
