"""Per-position tensors between depth plans, stack by stack, and resizing of relative-position tables.

A backbone lists its grown stacks (``model.growth_stacks()``: key prefix, depth plan, module): the ViT trunk is one
(prefix ``''``), each Swin stage one (``'layers.{s}.'``). A checkpoint saved at some plans loads into a model at
others (same base layers): per-position tensors follow their base layer (the k-th position that runs layer j takes
the k-th such saved position's), positions without a counterpart start fresh except for what a plain expansion
copies from their layer (own norms, own bias tables), so they start as a copy of that layer. Pure torch.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F

from .io import CheckpointError

# per-position tensors a new position copies from the original position of its layer (as expansion does)
_COPIED_AT_EXPANSION = ('norm1.', 'norm2.', 'relative_position_bias_table')


def stack_sources(model) -> Tuple[Tuple[int, ...], ...]:
    """Every stack's plan as its source list (what decides where per-position tensors go)."""
    return tuple(tuple(plan.sources) for _, plan, _ in model.growth_stacks())


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


def remap_positions(state: Mapping[str, torch.Tensor], old_sources: Sequence[int], new_sources: Sequence[int],
                    prefix: str = '') -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Move the per-position tensors ``{prefix}positions.{p}.*`` of a stack saved with plan ``old_sources`` onto plan
    ``new_sources``; other keys pass through.

    Positions of the new plan without a counterpart get nothing (they keep their fresh initialisation: zero
    adapter up-projections, zero gates, zero ViT rel-pos tables), except their own norms and Swin bias tables,
    which are copied from the original position of their base layer, like a plain expansion does.
    """
    pattern = re.compile('^' + re.escape(prefix) + r'positions\.(\d+)\.(.+)$')
    corr = position_correspondence(old_sources, new_sources)
    originals: Dict[int, int] = {}
    for p, j in enumerate(old_sources):
        originals.setdefault(j, p)
    per_old: Dict[int, Dict[str, torch.Tensor]] = {}
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            per_old.setdefault(int(m.group(1)), {})[m.group(2)] = value
        else:
            out[key] = value
    notes = []
    where = f'{prefix}' if prefix else ''
    for p, j in enumerate(new_sources):
        if p in corr:
            for rest, value in per_old.get(corr[p], {}).items():
                out[f'{prefix}positions.{p}.{rest}'] = value
            if corr[p] != p:
                notes.append(f'{where}position {p} <- saved position {corr[p]}')
        elif j in originals:
            for rest, value in per_old.get(originals[j], {}).items():
                if rest.startswith(_COPIED_AT_EXPANSION):
                    out[f'{prefix}positions.{p}.{rest}'] = value.clone()
            notes.append(f'{where}position {p} new (layer {j})')
    return out, notes


def remap_stacks(state: Mapping[str, torch.Tensor], old: Sequence[Sequence[int]], model
                 ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """:func:`remap_positions` for every stack of ``model``, from the saved plans ``old`` (one per stack)."""
    out, notes = dict(state), []
    for (prefix, plan, _), old_sources in zip(model.growth_stacks(), old):
        if tuple(old_sources) != tuple(plan.sources):
            out, stack_notes = remap_positions(out, old_sources, plan.sources, prefix)
            notes.extend(stack_notes)
    return out, notes


def check_positions_fit(model, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Per-position tensors without a recorded plan load only into a model with as many positions per stack."""
    saved, depths = [], []
    for prefix, plan, _ in model.growth_stacks():
        pattern = re.compile('^' + re.escape(prefix) + r'positions\.(\d+)\.')
        seen = [int(m.group(1)) for k in state for m in [pattern.match(k)] if m]
        saved.append(max(seen) + 1 if seen else 0)
        depths.append(plan.depth)
    if any(n and n != d for n, d in zip(saved, depths)):
        what = saved[0] if len(saved) == 1 else saved
        raise CheckpointError(
            f'{name} holds per-position parameters for {what} positions{"" if len(saved) == 1 else " per stage"} '
            f'but no {"depth plan" if len(saved) == 1 else "stage plans"} (it was not saved in the ScaleNet format), '
            f'so they cannot be matched to this model\'s {depths[0] if len(depths) == 1 else depths} positions: load '
            f'it into a model of those depths, or re-save it with mmscalenet.checkpoint.save_scalenet')


def resize_rel_pos(table: torch.Tensor, rows: int, dims: int) -> torch.Tensor:
    """Resize a relative-position table to ``rows`` rows: ``dims=1``, a decomposed (2S-1, head_dim) table of the
    ViT, linearly (detectron2 style); ``dims=2``, a ((2w-1)^2, heads) Swin bias table, bicubic over its square
    window grid."""
    if dims == 1:
        return F.interpolate(table.t().unsqueeze(0).float(), size=rows, mode='linear',
                             align_corners=False)[0].t().to(table.dtype).contiguous()
    src, dst = int(round(table.shape[0] ** 0.5)), int(round(rows ** 0.5))
    if src * src != table.shape[0] or dst * dst != rows:
        raise CheckpointError(f'cannot resize a relative-position table of {table.shape[0]} rows to {rows} '
                              f'(only square windows are resized)')
    grid = table.t().reshape(1, -1, src, src).float()
    grid = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return grid.reshape(-1, rows).t().to(table.dtype).contiguous()
