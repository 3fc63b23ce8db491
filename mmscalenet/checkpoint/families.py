"""What each backbone family keeps to itself when a checkpoint is loaded: its foreign key layouts, its check that
plain tensors come from its arch, and resizing its position embedding. Everything else (plans, remapping,
recorded configs, saving, export) is generic over the backbone's stacks."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import torch

from .convert import _base_depth_of, resize_pos_embed
from .convert_swin import check_swin_compatible, to_timm_layout
from .io import CheckpointError


def _check_vit_compatible(model, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
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
    # the base depth the file's plan indexes (its record's), else its layers: the model's base; the progressive
    # foil also loads its own grown depth (one layer per position)
    L = int(meta['base_depth']) if meta.get('base_depth') is not None else _base_depth_of(state)
    if L and L not in {model.growth_plan.base_depth, model.plan.base_depth}:
        raise CheckpointError(f'checkpoint has {L} base layers but the model\'s arch has '
                              f'{model.growth_plan.base_depth}: choose the arch of the checkpoint and grow it with '
                              f'depth=')
    if 'patch_embed.proj.weight' in state and state['patch_embed.proj.weight'].shape[-1] != model.patch_size:
        raise CheckpointError(f'checkpoint patch size {state["patch_embed.proj.weight"].shape[-1]} differs from '
                              f'the model\'s patch_size={model.patch_size}')


def to_model_layout(model, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
                    ) -> Tuple[Dict[str, torch.Tensor], str]:
    """``(state under the model's names, layout found)``, after the family's checks that plain tensors fit its arch.

    The ViT's foreign layouts are renamed when the backbone is split off (:func:`backbone_state_dict`); the Swin's
    (timm, Microsoft, mmdet / mmpretrain) here. Layout ``'scalenet'``: the file holds per-position tensors.
    """
    if model.family == 'swin':
        state, layout = to_timm_layout(state, len(model.plans))
        if layout != 'scalenet':
            check_swin_compatible(model, state)
        return state, layout
    _check_vit_compatible(model, state, meta)
    return dict(state), 'scalenet' if any(k.startswith('positions.') for k in state) else 'timm'


def resize_embeddings(model, state: Dict[str, torch.Tensor], resized: List[str]) -> None:
    """The ViT's position embedding to the model's grid (timm, DeiT, distilled DeiT, MAE / no class slot), in
    place; the Swin has none (its bias tables are resized with every stack's: ``load.py``)."""
    if model.family != 'vit' or 'pos_embed' not in state:
        return
    pe = state['pos_embed']
    n = pe.shape[1]
    if n == model.pos_embed.shape[1]:
        return
    if int(round((n - 1) ** 0.5)) ** 2 == n - 1:          # cls slot + grid (timm, DeiT, MAE)
        pe = resize_pos_embed(pe, model.grid, 1)
    elif int(round((n - 2) ** 0.5)) ** 2 == n - 2:        # distilled DeiT: cls + dist slots
        pe = resize_pos_embed(torch.cat([pe[:, :1], pe[:, 2:]], 1), model.grid, 1)
    elif int(round(n ** 0.5)) ** 2 == n:                  # no class slot
        pe = torch.cat([pe.new_zeros(1, 1, pe.shape[-1]), resize_pos_embed(pe, model.grid, 0)], 1)
    state['pos_embed'] = pe
    resized.append(f'pos_embed {n} -> {pe.shape[1]} tokens')
