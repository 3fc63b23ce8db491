"""Loading a checkpoint into a ``ScaleNetViT``, with remapping between depth plans.

A plain (timm / DeiT / MAE) checkpoint is grown to the model's plan at load; a ScaleNet checkpoint saved at one
depth loads into a model of another depth (same base layers): per-position parameters follow their base layer (the
k-th position that runs layer j takes the k-th such position's parameters), positions without a counterpart start
fresh. Importing this module gives ``ScaleNetViT.load_pretrained`` its loader (:func:`load_into_backbone`), so the
model file never imports the checkpoint code.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..expansion import expand_state_dict, make_depth_plan
from ..models.vit import ScaleNetViT
from ..utils import log
from .convert import (_POSITION_KEY, _base_depth_of, _is_gate_reshape, _positions_of, _resize_rel_pos,
                      backbone_state_dict, check_tensors_fit, match_gate_shapes, resize_pos_embed)
from ..models.vit import plain_data
from .format import _source_name, build_from_meta, read_checkpoint
from .io import META_KEY, CheckpointError


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
        saved = plain_data(meta['adapter']) if meta['adapter'] else None
        own = plain_data(model.adapter_cfg) if model.adapter_cfg else None
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


# ScaleNetViT.load_pretrained calls this; set here so that models/vit.py need not import the checkpoint package
ScaleNetViT.pretrained_loader = staticmethod(load_into_backbone)
