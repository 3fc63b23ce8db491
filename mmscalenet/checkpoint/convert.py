"""The ViT's foreign key layouts: timm / DeiT / MAE / mmpretrain / ``backbone.``-prefixed detector and classifier
state dicts to the backbone's timm names, position-embedding resizing; unwrapping any checkpoint, and shape checks
against a model (both families).

Pure torch; knows nothing of depth plans (``load.py``) or of the ScaleNet file (``format.py``).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from timm.layers import resample_abs_pos_embed

from ..expansion import stored_layer_count
from .io import FORMAT_VERSION, META_KEY, CheckpointError

_POSITION_KEY = re.compile(r'^positions\.(\d+)\.(.+)$')

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


def backbone_state_dict(state: Mapping[str, torch.Tensor], family: Optional[str] = 'vit'
                        ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Split into (backbone tensors with timm / ScaleNet names, classifier-head tensors ``head.*``).

    Accepts bare timm / DeiT / MAE dicts, mmpretrain ``backbone.layers.*`` dicts, and ``backbone.``-prefixed
    classifier or detector checkpoints. ``family='swin'`` (or ``None``: ``'vit'``): the backbone prefix and every
    ``head.*`` tensor are split off, nothing renamed (the Swin's layouts are ``convert_swin.py``'s).
    """
    if family == 'swin':
        backbone = any(k.startswith('backbone.') for k in state)
        head = {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.')}
        body = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')} if backbone else \
            {k: v for k, v in state.items() if not k.startswith('head.')}
        return body, head
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
    n = pos_embed.shape[1] - num_prefix
    side = int(round(n ** 0.5))
    if side * side != n:
        raise CheckpointError(f'pos_embed has {n} spatial tokens, which is not a square grid')
    if (side, side) == tuple(grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, list(grid), [side, side], num_prefix_tokens=num_prefix,
                                  antialias=False)   # bicubic, as the model resizes at run time


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


def _base_depth_of(state: Mapping[str, torch.Tensor]) -> int:
    return stored_layer_count(state)


def _positions_of(state: Mapping[str, torch.Tensor]) -> List[int]:
    return sorted({int(m.group(1)) for k in state for m in [_POSITION_KEY.match(k)] if m})
