"""Swin checkpoints for ``ScaleNetSwin``: key conversion (timm, Microsoft, mmdet / mmpretrain), expansion to the
stage plans, the untied copy and the plain timm export. Pure torch (reading goes through :mod:`mmscalenet.checkpoint`,
so every file is loaded with ``weights_only=True``).

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
* this project's own (``layers.{s}.positions.{p}.*`` present): loaded as it is when the plans match.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, NotMergeableError, resolve_checkpoint, split_checkpoint
from .utils import log

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


def _strip(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(backbone tensors without ``backbone.`` prefix, classifier-head tensors)."""
    if any(k.startswith('backbone.') for k in state):
        head = {k: v for k, v in state.items() if k.startswith('head.')}
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    else:
        head = {k: v for k, v in state.items() if k.startswith('head.')}
        state = {k: v for k, v in state.items() if not k.startswith('head.')}
    return state, head


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


def _resize_table(table: torch.Tensor, rows: int) -> torch.Tensor:
    """Bicubic resize of a ((2w-1)^2, heads) bias table to ``rows`` = (2w'-1)^2 rows (square windows)."""
    src, dst = int(round(table.shape[0] ** 0.5)), int(round(rows ** 0.5))
    if src * src != table.shape[0] or dst * dst != rows:
        raise CheckpointError(f'cannot resize a relative-position table of {table.shape[0]} rows to {rows} '
                              f'(only square windows are resized)')
    grid = table.t().reshape(1, -1, src, src).float()
    grid = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return grid.reshape(-1, rows).t().to(table.dtype).contiguous()


def expand_to_plans(model, state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """timm-layout Swin tensors (base depths) -> the grown model's: shared tensors stay at ``layers.{s}.blocks.{j}``,
    per-position ones (own norms, own bias tables) are copied to every position that runs block j."""
    out: Dict[str, torch.Tensor] = {}
    report: Dict[str, List[str]] = {'shared': [], 'copied': [], 'ignored': []}
    for key, value in state.items():
        m = _BLOCK.match(key)
        if not m:
            out[key] = value
            continue
        s, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if s >= len(model.plans) or j >= model.plans[s].base_depth:
            report['ignored'].append(key)
            continue
        local = None
        if 'norm' in model.unshared and rest.startswith(('norm1.', 'norm2.')):
            local = rest
        elif 'rel_pos' in model.unshared and rest == 'attn.relative_position_bias_table':
            local = 'relative_position_bias_table'
        if local is not None:
            for p in model.plans[s].positions_of(j):
                out[f'layers.{s}.positions.{p}.{local}'] = value.clone()
                report['copied'].append(f'layers.{s}.positions.{p}.{local}')
        else:
            out[key] = value
            report['shared'].append(key)
    return out, report


def _check_base_depths(model, state: Mapping[str, torch.Tensor]) -> None:
    found: Dict[int, int] = {}
    for key in state:
        m = _BLOCK.match(key)
        if m:
            s, j = int(m.group(1)), int(m.group(2))
            found[s] = max(found.get(s, 0), j + 1)
    base = tuple(p.base_depth for p in model.plans)
    got = tuple(found.get(s, 0) for s in range(len(base)))
    if got != base or len(found) != len(base):
        raise CheckpointError(f'checkpoint stage depths {tuple(found[s] for s in sorted(found))} do not match the '
                              f'model\'s base depths {base} (arch={model.arch["depths"]}): choose the arch of the '
                              f'checkpoint and grow it with depths=')
    w = state.get('patch_embed.proj.weight')
    if w is not None and (w.shape[0] != model.embed_dims or w.shape[-1] != model.patch_size):
        raise CheckpointError(f'checkpoint patch embedding {tuple(w.shape)} does not match the model (embed_dims='
                              f'{model.embed_dims}, patch_size={model.patch_size})')


def convert_for_swin(model, state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Map a Swin backbone state dict of any recognised layout onto ``model`` (a ``ScaleNetSwin``)."""
    state, layout = to_timm_layout(state, len(model.plans))
    report: Dict[str, Any] = {'layout': layout, 'expanded': [], 'resized': []}
    if layout != 'scalenet':
        _check_base_depths(model, state)
        state, rep = expand_to_plans(model, state)
        report['expanded'] = rep['copied']
    own = model.state_dict()
    for key in list(state):
        if key in own and own[key].shape != state[key].shape:
            if key.endswith('relative_position_bias_table') and state[key].shape[1] == own[key].shape[1]:
                state[key] = _resize_table(state[key], own[key].shape[0])
                report['resized'].append(key)
                continue
            raise CheckpointError(f'checkpoint tensor {key} has shape {tuple(state[key].shape)} but the model expects '
                                  f'{tuple(own[key].shape)}')
    return state, report


def load_into_swin(model, checkpoint: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Load a Swin checkpoint into a ``ScaleNetSwin``: convert the layout, expand to the plans, log a report."""
    name = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else '<state dict>'
    state, _ = split_checkpoint(resolve_checkpoint(checkpoint))
    state, _head = _strip(state)
    state, report = convert_for_swin(model, state)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing, _ = model.load_state_dict(usable, strict=False)
    ignored = sorted(k for k in state if k not in own)
    base = tuple(p.base_depth for p in model.plans)
    depths = tuple(p.depth for p in model.plans)
    log(f'ScaleNetSwin: loaded {len(usable)} tensors ({report["layout"]} layout) from {name} into a {base} -> '
        f'{depths} model; {len(report["expanded"])} copied to per-position tensors, {len(missing)} newly '
        f'initialised, {len(ignored)} ignored'
        f'{"; resized " + ", ".join(report["resized"]) if report["resized"] else ""}')
    return dict(layout=report['layout'], loaded=sorted(usable), expanded=report['expanded'],
                resized=report['resized'], new=sorted(missing), ignored=ignored)


# ---- untied copies --------------------------------------------------------------------------------------------
def untied_copy(model):
    """A ``ScaleNetSwin`` with base depths = ``model``'s grown depths and the identity mapping, every position owning
    a copy of its shared block and its own per-position tensors: the same function with nothing shared."""
    from .models.swin import ScaleNetSwin
    arch = dict(model.arch, depths=tuple(p.depth for p in model.plans))
    copy = ScaleNetSwin(arch, adapter=model.adapter_cfg, function_preserving=False, unshared=model.unshared,
                        img_size=model.img_size, in_channels=model.patch_embed.proj.in_channels,
                        drop_path_rate=model.drop_path_rate, out_type=model.out_type, out_indices=model.out_indices)
    state: Dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = _BLOCK.match(key)
        if m:
            s, j = int(m.group(1)), int(m.group(2))
            for p in model.plans[s].positions_of(j):
                state[f'layers.{s}.blocks.{p}.{m.group(3)}'] = value.detach().clone()
        else:
            state[key] = value.detach().clone()
    gates = {}
    for s, stage in enumerate(model.layers):   # function-preserving gates: the copy has none, keep them as such
        for p, pos in enumerate(stage.positions):
            if pos.gate_attn is not None:
                gates[(s, p)] = (pos.gate_attn.detach().clone(), pos.gate_mlp.detach().clone())
            state.pop(f'layers.{s}.positions.{p}.gate_attn', None)
            state.pop(f'layers.{s}.positions.{p}.gate_mlp', None)
    copy.load_state_dict(state, strict=True)
    for (s, p), (ga, gm) in gates.items():
        pos = copy.layers[s].positions[p]
        pos.gate_attn, pos.gate_mlp = torch.nn.Parameter(ga), torch.nn.Parameter(gm)
    return copy


@torch.no_grad()
def swin_timm_state_dict(model) -> Dict[str, torch.Tensor]:
    """A plain timm ``SwinTransformer`` state dict with depths = the grown depths, computing what ``model`` does.

    LoRA is merged into the weights, residual gates are folded into ``attn.proj`` / ``mlp.fc2``; parallel adapters
    (a ReLU between two projections) have no plain-Swin equivalent and are refused.
    """
    cfg = model.adapter_cfg
    if cfg is not None and cfg['type'] == 'ParallelAdapter':
        raise NotMergeableError('cannot export a ScaleNetSwin with ParallelAdapter adapters as a plain timm Swin '
                                '(the ReLU between the adapter\'s projections does not merge): use LoRA or '
                                'adapter=None')
    out: Dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith('layers.') and ('.blocks.' in key or '.positions.' in key):
            continue
        if re.match(r'^norm\d+\.', key):
            if int(key[4:key.index('.')]) != len(model.plans) - 1:
                continue
            key = 'norm.' + key.split('.', 1)[1]
        out[key] = value.detach().clone()
    for s, stage in enumerate(model.layers):
        for p, pos in enumerate(stage.positions):
            block = stage.blocks[model.plans[s].sources[p]]
            prefix = f'layers.{s}.blocks.{p}.'
            for name, norm in (('norm1', pos.norm1 or block.norm1), ('norm2', pos.norm2 or block.norm2)):
                out[prefix + f'{name}.weight'] = norm.weight.detach().clone()
                out[prefix + f'{name}.bias'] = norm.bias.detach().clone()
            table = pos.relative_position_bias_table
            table = table if table is not None else block.attn.relative_position_bias_table
            out[prefix + 'attn.relative_position_bias_table'] = table.detach().clone()
            gates = {'proj': pos.gate_attn, 'fc2': pos.gate_mlp}
            for path, short, linear in (('attn.qkv', 'qkv', block.attn.qkv), ('attn.proj', 'proj', block.attn.proj),
                                        ('mlp.fc1', 'fc1', block.mlp.fc1), ('mlp.fc2', 'fc2', block.mlp.fc2)):
                weight, bias = linear.weight.detach().float(), linear.bias.detach().float()
                if pos.lora is not None and short in pos.lora:
                    weight = pos.lora[short].merged(weight)
                gate = gates.get(short)
                if gate is not None:
                    weight, bias = weight * gate.float(), bias * gate.float()
                out[prefix + f'{path}.weight'] = weight.to(linear.weight.dtype).contiguous()
                out[prefix + f'{path}.bias'] = bias.to(linear.bias.dtype).contiguous()
    return out


def timm_swin_kwargs(model, num_classes: int = 0) -> Dict[str, Any]:
    """Arguments of timm's ``SwinTransformer`` for :func:`swin_timm_state_dict`."""
    a = model.arch
    return dict(img_size=tuple(model.img_size), patch_size=a['patch_size'],
                in_chans=int(model.patch_embed.proj.in_channels), embed_dim=a['embed_dims'],
                depths=tuple(p.depth for p in model.plans), num_heads=a['num_heads'], window_size=a['window_size'],
                mlp_ratio=float(a['mlp_ratio']), num_classes=num_classes)
