"""Foreign Swin layouts onto ``ScaleNetSwin``'s (timm 1.0's) names, and the Swin's own compatibility check.

Layouts recognised (after removing ``module.`` / ``backbone.`` prefixes and ``model`` / ``state_dict`` wrappers):

* timm 1.0 (``swin_tiny_patch4_window7_224``): ``layers.{s}.blocks.{j}.*``, patch merging ``layers.{s}.downsample``
  at the start of stage s (s > 0), final ``norm``, head ``head.fc``. This is the model's own naming.
* Microsoft's Swin repository: as timm, but ``layers.{s}.downsample`` at the *end* of stage s (so it has
  ``layers.0.downsample`` and no downsample in the last stage), ``relative_position_index`` / ``attn_mask`` buffers,
  head ``head``. Patch merging keeps its channel order (timm copied it).
* mmdet / mmpretrain: ``stages.{s}.blocks.{j}.attn.w_msa.*``, ``ffn.layers.0.0`` / ``ffn.layers.1``,
  ``patch_embed.projection``, ``stages.{s}.downsample`` at the end of stage s, output norms ``norm{i}``. Their patch
  merging is mmcv's ``nn.Unfold``, whose 4C input channels are ordered (channel, kernel row, kernel column), where
  timm concatenates the four 2x2 neighbours (row 0 col 0, row 1 col 0, row 0 col 1, row 1 col 1) channel blocks;
  :func:`unfold_to_timm_order` converts the reduction weight and the norm (the inverse of mmdet's
  ``swin_converter``).
* this project's own (``layers.{s}.positions.{p}.*`` present): loaded as it is.

Pure torch; the ViT's layouts are ``convert.py``, the depth plans ``stacks.py``.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Tuple

import torch

from .io import CheckpointError

LAYOUTS = ('timm', 'microsoft', 'openmmlab', 'scalenet')
_BLOCK = re.compile(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$')
_DROPPED = ('relative_position_index', 'attn_mask')
_UNFOLD_TO_TIMM = [0, 2, 1, 3]   # a permutation that is its own inverse


def unfold_to_timm_order(t: torch.Tensor) -> torch.Tensor:
    """Reorder the 4C input channels of an mmcv (``nn.Unfold``) patch-merging tensor into timm's order.

    ``t`` is the reduction weight (out, 4C) or the norm's weight / bias (4C,).
    """
    if t.dim() == 1:
        return t.reshape(-1, 4)[:, _UNFOLD_TO_TIMM].t().reshape(-1).contiguous()
    out = t.shape[0]
    return t.reshape(out, -1, 4)[:, :, _UNFOLD_TO_TIMM].transpose(1, 2).reshape(out, -1).contiguous()


def timm_to_unfold_order(t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unfold_to_timm_order` (timm / Microsoft -> mmcv), as mmdet's converter does it."""
    if t.dim() == 1:
        return t.reshape(4, -1)[_UNFOLD_TO_TIMM].t().reshape(-1).contiguous()
    out = t.shape[0]
    return t.reshape(out, 4, -1)[:, _UNFOLD_TO_TIMM].transpose(1, 2).reshape(out, -1).contiguous()


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    """One of :data:`LAYOUTS` for a backbone state dict (prefixes already removed)."""
    keys = list(state)
    if any(re.match(r'^layers\.\d+\.positions\.', k) for k in keys):
        return 'scalenet'
    if any(k.startswith('stages.') for k in keys) or 'patch_embed.projection.weight' in state:
        return 'openmmlab'
    if any(k.startswith('layers.0.downsample.') for k in keys):
        return 'microsoft'
    if any(_BLOCK.match(k) for k in keys):
        return 'timm'
    raise CheckpointError('the checkpoint holds no Swin blocks (expected layers.{s}.blocks.{j}.* (timm / Microsoft) '
                          'or stages.{s}.blocks.{j}.* (mmdet / mmpretrain))')


def to_timm_layout(state: Mapping[str, torch.Tensor], num_stages: int) -> Tuple[Dict[str, torch.Tensor], str]:
    """Any recognised Swin layout -> this model's (timm) names; returns the converted dict and the layout found.

    timm's / Microsoft's final ``norm`` becomes ``norm{num_stages - 1}`` (the last stage's output norm).
    """
    layout = detect_layout(state)
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(_DROPPED):
            continue
        if layout == 'microsoft':
            key = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.', key)
        elif layout == 'openmmlab':
            m = re.match(r'^stages\.(\d+)\.downsample\.(.+)$', key)
            if m:
                key = f'layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}'
                value = unfold_to_timm_order(value)
            else:
                key = re.sub(r'^patch_embed\.projection\.', 'patch_embed.proj.', key)
                key = re.sub(r'^stages\.(\d+)\.blocks\.', r'layers.\1.blocks.', key)
                key = key.replace('.attn.w_msa.', '.attn.').replace('.ffn.layers.0.0.', '.mlp.fc1.')
                key = key.replace('.ffn.layers.1.', '.mlp.fc2.')
        if layout in ('timm', 'microsoft') and key.startswith('norm.'):
            key = f'norm{num_stages - 1}.' + key[len('norm.'):]
        out[key] = value
    return out, layout


def check_swin_compatible(model, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse plain Swin tensors of other base depths or another patch embedding than ``model``'s arch."""
    found: Dict[int, int] = {}
    for key in state:
        m = _BLOCK.match(key)
        if m:
            s, j = int(m.group(1)), int(m.group(2))
            found[s] = max(found.get(s, 0), j + 1)
    base = tuple(p.base_depth for p in model.growth_plans)
    got = tuple(found.get(s, 0) for s in range(len(base)))
    stored = tuple(p.base_depth for p in model.plans)   # the progressive foil's own grown depths load too
    if got not in (base, stored) or len(found) != len(base):
        raise CheckpointError(f'checkpoint stage depths {tuple(found[s] for s in sorted(found))} do not match the '
                              f'model\'s base depths {base} (arch={model.arch["depths"]}): choose the arch of the '
                              f'checkpoint and grow it with depths=')
    w = state.get('patch_embed.proj.weight')
    if w is not None and (w.shape[0] != model.embed_dims or w.shape[-1] != model.patch_size):
        raise CheckpointError(f'checkpoint patch embedding {tuple(w.shape)} does not match the model (embed_dims='
                              f'{model.embed_dims}, patch_size={model.patch_size})')
