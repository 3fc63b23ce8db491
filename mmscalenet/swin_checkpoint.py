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

The ScaleNet-Swin format (:func:`save_swin`, and the checkpoints of a training run once its meta hook records the
backbone): the model's unique tensors (shared blocks once per stage, per-position tensors) and
``meta['scalenet'] = {'format_version', 'backbone': 'ScaleNetSwin', 'config': ScaleNetSwin.config()}``
(:func:`swin_scalenet_meta`). Loading one into a model with other stage plans is refused unless
``allow_other_plan``; then each stage's per-position tensors follow their base blocks
(:func:`mmscalenet.checkpoint.remap_positions`, stage by stage).
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .checkpoint import (FORMAT_VERSION, META_KEY, CheckpointError, NotMergeableError, atomic_save,
                         check_recorded_config, match_gate_shapes, position_correspondence, read_checkpoint,
                         remap_positions, resolve_checkpoint, save_safetensors, split_checkpoint, tensor_digest,
                         unique_state_dict)
from .utils import log

LAYOUTS = ('timm', 'microsoft', 'openmmlab', 'scalenet')
_BLOCK = re.compile(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$')
_POSITION = re.compile(r'^layers\.(\d+)\.(positions\.(\d+)\..+)$')
SWIN_BACKBONE = 'ScaleNetSwin'
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


def convert_for_swin(model, state: Mapping[str, torch.Tensor], saved=None, name: str = 'the checkpoint',
                     allow_other_plan: bool = False) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Map a Swin backbone state dict of any recognised layout onto ``model`` (a ``ScaleNetSwin``).

    ``saved``: the ``ScaleNetSwin`` (meta device) the checkpoint's metadata describes, if it has any
    (:func:`saved_swin`); it is checked against ``model`` (:func:`check_swin_recorded_config`) and its stage plans
    decide where per-position tensors go.
    """
    state, layout = to_timm_layout(state, len(model.plans))
    report: Dict[str, Any] = {'layout': layout, 'expanded': [], 'resized': [], 'remapped': []}
    if saved is not None:
        check_swin_recorded_config(model, saved, name, allow_other_plan)
    if layout != 'scalenet':
        _check_base_depths(model, state)
        state, rep = expand_to_plans(model, state)
        report['expanded'] = rep['copied']
    elif saved is not None:
        if _sources(saved) != _sources(model):
            state, report['remapped'] = remap_stage_positions(state, _sources(saved), _sources(model))
    else:
        _check_positions_fit(model, state, name)
    own = model.state_dict()
    for key in list(state):
        if key in own and own[key].shape != state[key].shape:
            if key.endswith('relative_position_bias_table') and state[key].shape[1] == own[key].shape[1]:
                state[key] = _resize_table(state[key], own[key].shape[0])
                report['resized'].append(key)
                continue
            if key.endswith(('gate_attn', 'gate_mlp')) and state[key].numel() == own[key].numel() == 1:
                continue   # a 0-dim / (1,) gate: reshaped at load (match_gate_shapes)
            raise CheckpointError(f'checkpoint tensor {key} has shape {tuple(state[key].shape)} but the model expects '
                                  f'{tuple(own[key].shape)}')
    return state, report


def load_into_swin(model, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False, *,
                   allow_nonfinite: bool = False, verify_checksum: bool = True, name: str = None) -> Dict[str, Any]:
    """Load a Swin checkpoint into a ``ScaleNetSwin``: convert the layout, expand to the plans, log a report.

    The file is checked first (:func:`mmscalenet.checkpoint.read_checkpoint`: stored SHA-256, no NaN / inf unless
    ``allow_nonfinite``). A ScaleNet-Swin checkpoint must come from the backbone ``model`` is, except for its stage
    plans when ``allow_other_plan`` (:func:`check_swin_recorded_config`).
    """
    name = name or (os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else '<state dict>')
    obj = resolve_checkpoint(checkpoint)
    try:   # another backbone's metadata is named as such before read_checkpoint checks it as a ViT's
        _refuse_other_backbone(split_checkpoint(obj)[1], name)
    except CheckpointError as err:
        if 'not a ScaleNetSwin' in str(err):
            raise
    state, meta = read_checkpoint(obj, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum, name=name)
    state, _head = _strip(state)
    try:
        state, report = convert_for_swin(model, state, saved_swin(meta, name), name, allow_other_plan)
    except CheckpointError as err:
        msg = str(err)
        raise CheckpointError(msg if msg.startswith(name) else f'{name}: {msg}') from None
    own = model.state_dict()
    usable = match_gate_shapes(model, {k: v for k, v in state.items() if k in own})
    missing, _ = model.load_state_dict(usable, strict=False)
    ignored = sorted(k for k in state if k not in own)
    base = tuple(p.base_depth for p in model.plans)
    depths = tuple(p.depth for p in model.plans)
    log(f'ScaleNetSwin: loaded {len(usable)} tensors ({report["layout"]} layout) from {name} into a {base} -> '
        f'{depths} model; {len(report["expanded"])} copied to per-position tensors, {len(missing)} newly '
        f'initialised, {len(ignored)} ignored'
        f'{"; resized " + ", ".join(report["resized"]) if report["resized"] else ""}'
        f'{"; saved at other plans: " + ", ".join(report["remapped"]) if report["remapped"] else ""}')
    return dict(layout=report['layout'], loaded=sorted(usable), expanded=report['expanded'],
                resized=report['resized'], remapped=report['remapped'], new=sorted(missing), ignored=ignored)


# ---- the ScaleNet-Swin format: metadata, recorded-config check, other plans ------------------------------------
def swin_scalenet_meta(model) -> Dict[str, Any]:
    """``meta['scalenet']`` of a ScaleNet-Swin checkpoint: plain data (JSON types) that rebuilds ``model``."""
    return {'format_version': FORMAT_VERSION, 'backbone': SWIN_BACKBONE, 'config': model.config()}


def _refuse_other_backbone(meta: Mapping[str, Any], name: str) -> bool:
    """Raise on metadata of another backbone (a ViT's has ``arch``); True for a depth plan only (nothing about a
    Swin), False for a ScaleNetSwin's."""
    if meta.get('backbone') == SWIN_BACKBONE:
        return False
    if 'arch' in meta or 'backbone' in meta:
        raise CheckpointError(f'{name} was saved from a {meta.get("backbone", "ScaleNetViT")} backbone, not a '
                              f'ScaleNetSwin: load it into the backbone it was saved from')
    return True


def saved_swin(meta: Mapping[str, Any], name: str = 'the checkpoint'):
    """The ``ScaleNetSwin`` (built on the meta device: no memory) that ScaleNet metadata describes, or ``None`` for
    a checkpoint without any. Metadata of another backbone, or a config that builds no model, is refused."""
    if not meta or _refuse_other_backbone(meta, name):
        return None
    from .models.swin import ScaleNetSwin
    cfg = meta.get('config')
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f'{name}: its ScaleNetSwin metadata has no "config" dict (got {type(cfg).__name__})')
    try:
        with torch.device('meta'):
            return ScaleNetSwin.from_config(cfg)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f'{name}: its ScaleNetSwin metadata does not describe a valid model: {err}') from None


def _sources(model) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(p.sources) for p in model.plans)


def _is_plain(model) -> bool:
    """No growth, adapters or gates: a checkpoint of it is grown at load like a timm one."""
    return (all(p.sources == tuple(range(p.base_depth)) for p in model.plans) and not model.adapter_cfg
            and not model.function_preserving)


def _cli_tuple(values) -> str:
    return '"(' + ','.join(str(v) for v in values) + ')"'


def _cli_mapping(model) -> str:
    """``--cfg-options`` value of ``model``'s stage plans: a name when every stage follows it, else the lists."""
    from .expansion import make_depth_plan
    for kind in ('cyclic', 'interleave'):
        if all(make_depth_plan(p.base_depth, p.depth, kind).sources == p.sources for p in model.plans):
            return kind
    return '"[' + ','.join('[' + ','.join(map(str, p.sources)) + ']' for p in model.plans) + ']"'


def check_swin_recorded_config(model, saved, name: str = 'the checkpoint', allow_other_plan: bool = False) -> None:
    """Refuse a ScaleNet-Swin checkpoint saved from another backbone than ``model``, in one line with the
    ``--cfg-options`` that build the checkpoint's backbone.

    Arch and unshared tensors must always match; adapters and gates as for the ViT
    (:func:`mmscalenet.checkpoint.check_recorded_config`); the stage plans unless ``allow_other_plan``. A plain saved
    model (base depths, no adapters, no gates) is grown at load like a timm checkpoint.
    """
    if saved.arch != model.arch:
        raise CheckpointError(f'{name} was saved from a Swin of arch {saved.config()["arch"]}, the model is '
                              f'{model.config()["arch"]}: build it with --cfg-options model.backbone.arch=... '
                              f'(the checkpoint\'s)')
    if set(saved.unshared) != set(model.unshared):
        raise CheckpointError(f'{name} was saved with unshared={saved.unshared}, the model has '
                              f'unshared={model.unshared}: build it with --cfg-options model.backbone.unshared='
                              f'{_cli_tuple(saved.unshared) if saved.unshared else "()"}')
    if _is_plain(saved):
        return
    check_recorded_config(model, {'adapter': saved.adapter_cfg, 'function_preserving': saved.function_preserving},
                          name)
    if not allow_other_plan and _sources(saved) != _sources(model):
        raise CheckpointError(
            f'{name} was saved from other ScaleNetSwin stage plans than the config builds: depths '
            f'{tuple(p.depth for p in saved.plans)} with sources {[list(s) for s in _sources(saved)]} (model: depths '
            f'{tuple(p.depth for p in model.plans)}, sources {[list(s) for s in _sources(model)]}). Build the '
            f'checkpoint\'s backbone with --cfg-options model.backbone.depths='
            f'{_cli_tuple(p.depth for p in saved.plans)} model.backbone.mapping={_cli_mapping(saved)} (or continue '
            f'at other depths on purpose with init_cfg.allow_other_plan=True)')


def remap_stage_positions(state: Mapping[str, torch.Tensor], old: Sequence[Sequence[int]],
                          new: Sequence[Sequence[int]]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Move the per-position tensors ``layers.{s}.positions.{p}.*`` of plans ``old`` onto plans ``new``, stage by
    stage with :func:`mmscalenet.checkpoint.remap_positions`. A new position without a saved counterpart also gets
    its own bias table copied from the original position of its block (as expansion from timm does), so it starts
    as a copy of that block, not with a random table."""
    out = {k: v for k, v in state.items() if not _POSITION.match(k)}
    notes: List[str] = []
    for s, (old_s, new_s) in enumerate(zip(old, new)):
        prefix = f'layers.{s}.'
        stage = {m.group(2): v for k, v in state.items() for m in [_POSITION.match(k)] if m and int(m.group(1)) == s}
        if tuple(old_s) == tuple(new_s):
            moved, stage_notes = stage, []
        else:
            moved, stage_notes = remap_positions(stage, old_s, new_s)
            corr = position_correspondence(old_s, new_s)
            originals: Dict[int, int] = {}
            for p, j in enumerate(old_s):
                originals.setdefault(j, p)
            for p, j in enumerate(new_s):
                table = f'positions.{originals.get(j)}.relative_position_bias_table'
                if p not in corr and table in stage:
                    moved[f'positions.{p}.relative_position_bias_table'] = stage[table].clone()
        out.update({prefix + k: v for k, v in moved.items()})
        notes.extend(f'stage {s} {n}' for n in stage_notes)
    return out, notes


def _check_positions_fit(model, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Per-position tensors without a recorded plan load only into a model with as many positions per stage."""
    saved: Dict[int, int] = {}
    for key in state:
        m = _POSITION.match(key)
        if m:
            s, p = int(m.group(1)), int(m.group(3))
            saved[s] = max(saved.get(s, 0), p + 1)
    depths = [p.depth for p in model.plans]
    got = [saved.get(s, 0) for s in range(max(len(depths), max(saved, default=-1) + 1))]
    if any(n and n != d for n, d in zip(got, depths)) or len(got) > len(depths):
        raise CheckpointError(f'{name} holds per-position parameters for {got} positions per stage but no stage plans '
                              f'(not saved in the ScaleNet-Swin format), so they cannot be matched to the model\'s '
                              f'{depths}: load it into a model of those depths, or re-save it with '
                              f'mmscalenet.swin_checkpoint.save_swin')


def save_swin(model, path: str, head: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Write ``model``'s unique tensors (+ optional classifier head ``head.*``) and :func:`swin_scalenet_meta`,
    atomically; ``.safetensors`` paths get a safetensors file, anything else a ``weights_only``-loadable one."""
    state = unique_state_dict(model)
    for k, v in (head or {}).items():
        state[f'head.{k}'] = v.detach().clone().contiguous()
    meta = swin_scalenet_meta(model)
    if os.fspath(path).endswith('.safetensors'):
        save_safetensors(state, meta, path)
    else:
        meta['sha256'] = tensor_digest(state)
        atomic_save({'state_dict': state, 'meta': {META_KEY: meta}}, path)


def load_swin(source: Union[str, Mapping[str, Any]], *, allow_nonfinite: bool = False, verify_checksum: bool = True,
              **overrides: Any):
    """``(ScaleNetSwin, head tensors)`` rebuilt from a ScaleNet-Swin checkpoint (:func:`save_swin`, or a training
    checkpoint whose metadata records the backbone). Without ``overrides`` the saved model, tensor for tensor;
    with ``depths=`` / ``mapping=`` (or any other argument) a new model continuing from it at other plans."""
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else '<state dict>'
    state, meta = read_checkpoint(source, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
    saved = saved_swin(meta, name)
    if saved is None:
        raise CheckpointError(f'{name} carries no ScaleNetSwin metadata (meta["scalenet"]["config"]): build the model '
                              f'from its config instead (--config)')
    from .models.swin import ScaleNetSwin
    model = ScaleNetSwin.from_config(saved.config(), **overrides)
    backbone, head = _strip(state)
    head = {k[len('head.'):]: v for k, v in head.items()}
    if overrides:
        load_into_swin(model, {'state_dict': backbone, 'meta': {META_KEY: meta}}, allow_other_plan=True,
                       allow_nonfinite=allow_nonfinite, verify_checksum=False, name=name)
        return model, head
    missing, unexpected = model.load_state_dict(match_gate_shapes(model, backbone), strict=False)
    if missing or unexpected:
        raise CheckpointError(f'{name}: the checkpoint does not match the ScaleNetSwin its metadata describes: '
                              f'missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}')
    return model, head


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
                                'adapter=None, or export the shared format instead (tools/export.py SRC DST '
                                '--format scalenet, or mmscalenet.swin_checkpoint.save_swin)')
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
