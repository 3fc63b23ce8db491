"""Loading a checkpoint into either backbone family, grown to its plans or remapped from other plans.

A plain checkpoint (timm / DeiT / MAE / mmpretrain ViT; timm / Microsoft / mmdet Swin) is grown to the model's
plans at load; a ScaleNet checkpoint saved at some plans loads into a model at others (same base layers): per-
position parameters follow their base layer (``stacks.py``). One path for both families: the family keeps only its
foreign layouts and embeddings (``families.py``). The models never import this package: ``mmscalenet/__init__.py``
hands :func:`load_backbone` to them (``load_pretrained``).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..expansion import copy_layers, expand_stacks, stored_layer_count
from ..utils import log
from .convert import _is_gate_reshape, backbone_state_dict, check_tensors_fit, match_gate_shapes, split_checkpoint
from .families import resize_embeddings, to_model_layout
from .format import _source_name, read_checkpoint
from .io import META_KEY, CheckpointError, resolve_checkpoint
from .meta import FAMILIES, build_from_meta, family_of, read_record, saved_backbone
from .recorded import check_recorded_config
from .stacks import check_positions_fit, remap_stacks, resize_rel_pos, stack_sources

_TABLE_DIMS = {'rel_pos_h': 1, 'rel_pos_w': 1, 'relative_position_bias_table': 2}


def _saved_sources(meta: Mapping[str, Any], name: str):
    """The plans (one source list per stack) a checkpoint's record describes, or ``None``."""
    saved = saved_backbone(meta, name)
    if saved is not None:
        return stack_sources(saved)
    return ([int(j) for j in meta['sources']],) if meta.get('sources') is not None else None


def convert_for_model(model, state: Mapping[str, torch.Tensor], meta: Optional[Mapping[str, Any]] = None,
                      name: str = 'the checkpoint', allow_other_plan: bool = False) -> Tuple[Dict, Dict]:
    """Map a backbone state dict of any recognised layout onto ``model`` (either family): the family's layout and
    arch checks, the recorded config (:func:`check_recorded_config`), then every stack grown or remapped to the
    model's plan, tables and embeddings resized. Returns ``(state, report)``."""
    meta = dict(meta or {})
    if family_of(meta, name) not in (None, model.family):
        check_recorded_config(model, meta, name, allow_other_plan)   # names both backbones
    state, layout = to_model_layout(model, state, meta)
    check_recorded_config(model, meta, name, allow_other_plan)
    report: Dict[str, Any] = {'layout': layout, 'expanded': [], 'resized': [], 'remapped': []}
    stacks = [(prefix, plan) for prefix, plan, _ in model.growth_stacks()]
    if layout == 'scalenet':
        old = _saved_sources(meta, name)
        if old is not None:
            state, report['remapped'] = remap_stacks(state, old, model)
        else:
            check_positions_fit(model, state, name)
    state, report['copied_layers'] = grow_copies(model, state)
    # plain tensors, or a ScaleNet file of shared norms / tables into a model with its own: copied along the plans
    state, rep = expand_stacks(state, stacks, model.unshared)
    report['expanded'] = rep['copied']
    resize_embeddings(model, state, report['resized'])
    own = model.state_dict()
    for key in list(state):
        value = state[key]
        if key in own and own[key].shape != value.shape:
            dims = _TABLE_DIMS.get(key.rsplit('.', 1)[-1])
            if dims and value.dim() == 2 and value.shape[1] == own[key].shape[1]:
                state[key] = resize_rel_pos(value, own[key].shape[0], dims)
                report['resized'].append(f'{key} {value.shape[0]} -> {own[key].shape[0]} rows')
                continue
            if _is_gate_reshape(key, value, own[key]):
                state[key] = value.reshape(own[key].shape)
                continue
            raise CheckpointError(f'checkpoint tensor {key} has shape {tuple(value.shape)} but the model expects '
                                  f'{tuple(own[key].shape)}')
    check_tensors_fit(own, state)
    return state, report


def grow_copies(model, state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The progressive foil (``growth='copy'`` / ``'copy_zero'``): a stack saved at its base depth gets one
    independent copy of its layer per position (:func:`~mmscalenet.expansion.copy_layers`); a stack saved at the grown
    depth (a trained copy model, a plain deep ViT) loads as it is. Returns the state and the layers copied."""
    state = dict(state)
    copied: List[str] = []
    if getattr(model, 'growth', 'shared') == 'shared':
        return state, copied
    for (prefix, _, _), plan in zip(model.growth_stacks(), model.growth_plans):
        if plan.depth > plan.base_depth and stored_layer_count(state, prefix) == plan.base_depth:
            state, zeroed = copy_layers(state, plan, prefix, zero_inserted=model.growth == 'copy_zero')
            copied.append(f'{prefix or "trunk "}{plan.base_depth} -> {plan.depth} layers'
                          + (f' ({len(zeroed)} output projections zeroed)' if zeroed else ''))
    return state, copied


def _depths_text(model) -> str:
    plans = model.growth_plans
    if len(plans) == 1:
        return f'{plans[0].base_depth}->{plans[0].depth} layer'
    return f'{tuple(p.base_depth for p in plans)} -> {tuple(p.depth for p in plans)}'


def load_backbone(model, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False, *,
                  allow_nonfinite: bool = False, verify_checksum: bool = True,
                  name: Optional[str] = None) -> Dict[str, Any]:
    """Load ``checkpoint`` into a backbone of either family: grow it to the plans, resize, log what happened.

    The checkpoint is checked first (:func:`read_checkpoint`: checksum, metadata, no NaN / inf unless
    ``allow_nonfinite``); ``name`` names it in messages (default: its path). A ScaleNet checkpoint must have been
    saved from the backbone the model is (:func:`check_recorded_config`); ``allow_other_plan`` lets it continue at
    other plans. A plain checkpoint is grown at load, and said so in the log when the model is deeper than it.
    """
    name = name or _source_name(checkpoint)
    obj = resolve_checkpoint(checkpoint)
    try:   # another family's record is named as such before it is validated as this family's
        family = family_of(split_checkpoint(obj)[1], name)
    except CheckpointError:
        family = None   # read_checkpoint reports it
    if family is not None and family != model.family:
        raise CheckpointError(f'{name} was saved from a {FAMILIES[family][0].__name__} backbone, not a '
                              f'{FAMILIES[model.family][0].__name__}: load it into the backbone it was saved from')
    state, meta = read_checkpoint(obj, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum, name=name)
    state, _ = backbone_state_dict(state, model.family)
    try:
        state, report = convert_for_model(model, state, meta, name, allow_other_plan)
    except CheckpointError as err:
        msg = str(err)
        raise CheckpointError(msg if msg.startswith(name) else f'{name}: {msg}') from None
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing, _ = model.load_state_dict(usable, strict=False)
    ignored = sorted(k for k in state if k not in own)
    backbone = FAMILIES[model.family][0].__name__
    inserted = sum(plan.depth - plan.base_depth for plan in model.growth_plans)
    copies = ': ' + ', '.join(report['copied_layers']) if report['copied_layers'] else ''
    how = ('share their layers' if model.growth == 'shared' else
           f'hold their own copies (growth={model.growth!r}{copies})')
    log(f'{backbone}: loaded {len(usable)} tensors ({report["layout"]} layout) from {name} into a '
        f'{_depths_text(model)} model; {len(report["expanded"])} copied to per-position tensors, {inserted} inserted '
        f'positions {how}, {len(missing)} newly initialised ({_summarise(missing)}), {len(ignored)} '
        f'ignored ({_summarise(ignored)}){"; " + ", ".join(report["resized"]) if report["resized"] else ""}'
        f'{"; saved at another depth: " + ", ".join(report["remapped"]) if report["remapped"] else ""}')
    grown = inserted if model.growth == 'shared' else report['copied_layers']
    if report['layout'] != 'scalenet' and not meta and grown:
        log(f'{backbone}: {name} is a plain {_base_text(model)} checkpoint, grown at load to {_grown_text(model)}: '
            f'the model starts from it, not from a ScaleNet (ImageNet-stage) checkpoint', level=logging.WARNING)
    return dict(layout=report['layout'], loaded=sorted(usable), expanded=report['expanded'],
                resized=report['resized'], remapped=report['remapped'], new=sorted(missing), ignored=ignored)


def _base_text(model) -> str:
    bases = [plan.base_depth for plan in model.growth_plans]
    return f'{bases[0]}-layer' if len(bases) == 1 else f'{tuple(bases)}-block'


def _grown_text(model) -> str:
    depths = [plan.depth for plan in model.growth_plans]
    return f'{depths[0]} positions' if len(depths) == 1 else f'{tuple(depths)} positions'


def _summarise(keys: List[str], limit: int = 4) -> str:
    if not keys:
        return 'none'
    kinds = sorted({re.sub(r'\d+', '*', k) for k in keys})
    return ', '.join(kinds[:limit]) + (f', ... ({len(kinds)} kinds)' if len(kinds) > limit else '')


def load_scalenet(source: Union[str, Mapping[str, Any]], strict: bool = True, *, allow_nonfinite: bool = False,
                  verify_checksum: bool = True, **overrides: Any):
    """Rebuild and load a backbone (either family) saved with :func:`save_scalenet` (``.pth`` or ``.safetensors``),
    or a training checkpoint whose metadata records it.

    Without ``overrides`` the model is the saved one, tensor for tensor (``strict``). With ``depth=`` / ``depths=``
    / ``mapping=`` (or any other constructor argument) it is a new model that continues from the saved one: shared
    layers load as they are, per-position parameters follow their base layer (:func:`remap_stacks`).

    The file is checked before anything is built (:func:`read_checkpoint`); ``allow_nonfinite`` and
    ``verify_checksum`` are passed on to it. Returns ``(model, head)``, ``head`` being the classifier-head tensors
    saved with it (possibly empty).
    """
    name = _source_name(source)
    state, meta = read_checkpoint(source, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
    record = read_record(meta, name)
    if record is None or record.config is None:
        raise CheckpointError(f'{name}: carries no ScaleNet metadata (arch, depth plan): it was not saved with '
                              f'mmscalenet.checkpoint.save_scalenet; build the model from its config instead')
    model = build_from_meta(meta, **overrides)
    backbone, head = backbone_state_dict(state, record.family)
    if overrides:
        load_backbone(model, {'state_dict': {**backbone}, 'meta': {META_KEY: meta}}, allow_other_plan=True,
                      allow_nonfinite=allow_nonfinite, verify_checksum=False, name=name)
        return model, head
    missing, unexpected = model.load_state_dict(match_gate_shapes(model, backbone), strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f'{name}: the checkpoint does not match the model its metadata describes: missing '
                              f'{_summarise(list(missing))}, unexpected {_summarise(list(unexpected))}')
    return model, head


load_into_backbone = load_backbone   # the name of the previous release, kept for callers
