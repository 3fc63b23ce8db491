"""Export to plain timm: untying the shared tensors and merging LoRA deltas and gates into a depth-D
``VisionTransformer`` state dict, or saying why a model has no exact plain-ViT equivalent."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

from ..expansion import untie_state_dict
from .io import CheckpointError


class NotMergeableError(CheckpointError):
    """The model cannot be written as a plain (untied) timm ViT."""


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
    for p in range(model.plan.depth):
        try:
            block = model.untied_block_state(p)
        except ValueError as err:   # an adapter that cannot be merged (check_exportable names the way out)
            raise NotMergeableError(str(err)) from None
        state.update({f'positions.{p}.{name}': value for name, value in block.items()})
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
