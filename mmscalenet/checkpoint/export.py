"""Export to plain timm, both families: untying the shared tensors and merging LoRA deltas and gates, position by
position (each position's ``export_state``), into a ``VisionTransformer`` / ``SwinTransformer`` state dict of the
grown depths, or saying why a model has no exact plain equivalent."""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional

import torch

from ..expansion import untie_state_dict
from .io import CheckpointError

_TIMM_NAMES = {'vit': 'ViT', 'swin': 'Swin'}


class NotMergeableError(CheckpointError):
    """The model cannot be written as a plain (untied) timm ViT."""


def timm_kwargs(model, num_classes: int = 0) -> Dict[str, Any]:
    """Arguments of timm's ``VisionTransformer`` (ViT) or ``SwinTransformer`` (Swin) for the untied export of
    ``model`` (the family's own export target)."""
    common = dict(img_size=tuple(model.img_size), in_chans=int(model.patch_embed.proj.in_channels),
                  num_classes=num_classes)
    if model.family == 'swin':
        a = model.arch
        return dict(common, patch_size=a['patch_size'], embed_dim=a['embed_dims'],
                    depths=tuple(p.depth for p in model.plans), num_heads=a['num_heads'],
                    window_size=a['window_size'], mlp_ratio=float(a['mlp_ratio']))
    return dict(common, patch_size=model.patch_size, embed_dim=model.embed_dims, depth=model.plan.depth,
                num_heads=model.num_heads, mlp_ratio=float(model.arch['mlp_ratio']))


def check_exportable(model) -> None:
    """Raise :class:`NotMergeableError`, saying why, when ``model`` has no exact plain-timm equivalent."""
    target = _TIMM_NAMES[model.family]
    offer = ('Export the shared format instead (tools/export.py SRC DST --format scalenet, or '
             'mmscalenet.checkpoint.save_scalenet): unique tensors + the depth plans + the adapters, loaded with '
             'mmscalenet.')
    cfg = model.adapter_cfg
    if cfg is not None and cfg['type'] == 'ParallelAdapter':
        raise NotMergeableError(
            f'cannot export a model with ParallelAdapter adapters as a plain timm {target}: an adapter adds '
            'up(relu(down(h))) beside its sub-layer, and the ReLU between the two projections means no change to '
            'the block\'s own weights computes the same function (only linear adapters such as LoRA merge). '
            + offer)
    if model.family == 'swin':
        last = len(model.plans) - 1
        if last not in model.out_indices:
            raise NotMergeableError(f'the backbone has no output norm of its last stage (out_indices='
                                    f'{model.out_indices}), which timm\'s SwinTransformer needs as its final norm. '
                                    + offer)
        return
    if model.window_size or model.use_rel_pos:
        raise NotMergeableError('cannot export window attention or relative-position tables as a plain timm '
                                'ViT: timm\'s VisionTransformer has neither. ' + offer)
    if model.out_type != 'cls_token':
        raise NotMergeableError(
            f'cannot export an out_type={model.out_type!r} backbone as a timm VisionTransformer: it has no class '
            f'token and final norm (export needs out_type="cls_token"). ' + offer)


@torch.no_grad()
def untied_state_dict(model, head: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """A plain timm state dict of the grown depths computing exactly what ``model`` computes (either family).

    Every position of every stack gets its own copy of its shared block (:meth:`Position.export_state`): its LoRA
    deltas merged into the weights, its residual gates (function-preserving growth) folded into ``attn.proj`` /
    ``mlp.fc2``, its own norms and bias table if it has them. ``head`` (``weight``, ``bias``) becomes timm's head
    (``head`` / ``head.fc``). The Swin's output norm of the last stage becomes timm's final ``norm``.
    """
    check_exportable(model)
    stacks = model.growth_stacks()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not any(k.startswith((f'{prefix}blocks.', f'{prefix}positions.')) for prefix, _, _ in stacks)}
    for prefix, plan, stack in stacks:
        for p, pos in enumerate(stack.positions):
            try:
                block = pos.export_state(stack.blocks[plan.sources[p]])
            except ValueError as err:   # an adapter that cannot be merged (check_exportable names the way out)
                raise NotMergeableError(str(err)) from None
            state.update({f'{prefix}positions.{p}.{name}': value for name, value in block.items()})
        state = untie_state_dict(state, plan, prefix)
    if model.family == 'swin':   # mmdet's per-stage output norms: timm has the last one, as ``norm``
        last = len(stacks) - 1
        state = {(f'norm.{k.split(".", 1)[1]}' if k.startswith(f'norm{last}.') else k): v for k, v in state.items()
                 if not re.match(rf'^norm(?!{last}\.)\d+\.', k)}
    if head:
        where = 'head.fc.' if model.family == 'swin' else 'head.'
        out = {f'{where}weight': head['weight'].detach().clone(), f'{where}bias': head['bias'].detach().clone()}
        state.update(out)
    return state


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
