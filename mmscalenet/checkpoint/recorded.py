"""Refusing a ScaleNet checkpoint saved from another backbone than the model, in one line with the
``--cfg-options`` that build the checkpoint's backbone (both families: the option names come from the backbone's own
``config()``)."""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from ..expansion import make_depth_plan
from ..models.vit import plain_data
from .io import CheckpointError
from .meta import FAMILIES, read_record, saved_backbone
from .stacks import stack_sources


def _option_value(value: Any) -> str:
    """A value as mmengine's ``--cfg-options`` parses it back (tuples as ``"(a,b)"``)."""
    if isinstance(value, (list, tuple)):
        return '"(' + ','.join(str(v) for v in value) + (',' if len(value) == 1 else '') + ')"'
    return str(value)


def _mapping_option(sources: Sequence[Sequence[int]], bases: Sequence[int]) -> str:
    """'cyclic' / 'interleave' when every stack follows it, else the explicit list(s) as an option value."""
    for kind in ('cyclic', 'interleave'):
        if all(tuple(make_depth_plan(b, len(s), kind).sources) == tuple(s) for s, b in zip(sources, bases)):
            return kind
    if len(sources) == 1:
        return '"[' + ','.join(str(j) for j in sources[0]) + ']"'
    return '"[' + ','.join('[' + ','.join(map(str, s)) + ']' for s in sources) + ']"'


def _plans_text(sources: Sequence[Sequence[int]]) -> str:
    if len(sources) == 1:
        return f'depth {len(sources[0])} with sources {list(sources[0])}'
    return f'depths {tuple(len(s) for s in sources)} with sources {[list(s) for s in sources]}'


def _is_plain(sources: Sequence[Sequence[int]], meta_adapter: Any, function_preserving: Any) -> bool:
    """No growth, adapters or gates: a checkpoint of it is grown at load like a timm one."""
    return all(tuple(s) == tuple(range(len(set(s)))) and len(s) == len(set(s)) for s in sources) and \
        not meta_adapter and not function_preserving


def _copies(growth: str) -> bool:
    return growth != 'shared'


def _check_growth(model, saved_growth: str, plain: bool, saved_adapter: Any, name: str) -> None:
    """ScaleNet (shared layers) and the progressive foil (one copy per position) hold different tensors: a checkpoint
    of one is refused by the other, naming the ``--cfg-options`` that build the checkpoint's backbone. A plain base
    model's checkpoint (no growth, no adapters) starts either. 'copy' and 'copy_zero' differ only in how the copies
    start, so their checkpoints load into each other."""
    if _copies(saved_growth) == _copies(model.growth) or (plain and not _copies(saved_growth)):
        return
    fixes = [f'model.backbone.growth={saved_growth}']
    saved_cfg = plain_data(saved_adapter) if saved_adapter else None
    if saved_cfg != (plain_data(model.adapter_cfg) if model.adapter_cfg else None):
        fixes.append('model.backbone.adapter=None' if saved_cfg is None else
                     ' '.join(f'model.backbone.adapter.{k}={_option_value(v)}' for k, v in saved_cfg.items()))
    kinds = {False: 'ScaleNet, layers shared between positions', True: 'progressive, one copy per position'}
    raise CheckpointError(f'{name} was saved with growth={saved_growth!r} ({kinds[_copies(saved_growth)]}), the '
                          f'model has growth={model.growth!r} ({kinds[_copies(model.growth)]}): build the '
                          f'checkpoint\'s backbone with --cfg-options {" ".join(fixes)}')


def check_recorded_config(model, meta: Optional[Mapping[str, Any]], name: str = 'the checkpoint',
                          allow_other_plan: bool = False) -> None:
    """Refuse a ScaleNet checkpoint whose recorded backbone differs from ``model``'s where its tensors cannot follow.

    Always refused: another family; another arch; per-position tensors the model does not have (its ``unshared``
    lacks one of the saved). A checkpoint without metadata (timm, DeiT, MAE, Microsoft's Swin), or of a plain
    model (base depths, no adapters or gates), is not checked further: it is grown to the model's plans. Otherwise
    adapters and gates must match, and the plans too unless ``allow_other_plan`` (continuing at other depths on
    purpose: :func:`~mmscalenet.checkpoint.stacks.remap_stacks`). One line names both values and the
    ``--cfg-options`` that build the checkpoint's backbone.
    """
    record = read_record(meta or {}, name)
    if record is None:
        return
    own = FAMILIES[model.family][0].__name__
    if record.family != model.family:
        raise CheckpointError(f'{name} was saved from a {record.backbone} backbone, not a {own}: load it into the '
                              f'backbone it was saved from')
    saved = saved_backbone(meta, name)
    if saved is not None:
        if plain_data(saved.arch) != plain_data(model.arch):
            raise CheckpointError(f'{name} was saved from a {own} of arch {saved.config()["arch"]}, the model is '
                                  f'{model.config()["arch"]}: build it with --cfg-options model.backbone.arch=... '
                                  f'(the checkpoint\'s)')
        if set(saved.unshared) - set(model.unshared):
            raise CheckpointError(f'{name} was saved with unshared={saved.unshared}, the model has '
                                  f'unshared={model.unshared}: build it with --cfg-options model.backbone.unshared='
                                  f'{_option_value(saved.unshared) if saved.unshared else "()"}')
        sources, bases = stack_sources(saved), [plan.base_depth for _, plan, _ in saved.growth_stacks()]
        adapter, gates = saved.adapter_cfg, saved.function_preserving
        depth_key = 'depths' if 'depths' in saved.config() else 'depth'
        depth_value = saved.config()[depth_key]
    else:   # a ViT record of a depth plan only
        sources = [[int(j) for j in meta['sources']]] if meta.get('sources') is not None else None
        bases = [int(meta.get('base_depth', model.plan.base_depth))]
        adapter, gates = meta.get('adapter'), meta.get('function_preserving')
        depth_key, depth_value = 'depth', len(sources[0]) if sources else None
    saved_growth = getattr(saved, 'growth', 'shared')
    plain = sources is not None and _is_plain(sources, adapter, gates)
    _check_growth(model, saved_growth, plain, adapter, name)
    own_sources = stack_sources(model)
    if _copies(saved_growth) and _copies(model.growth) and sources is not None and \
            [len(s) for s in sources] != [len(s) for s in own_sources]:
        # a trained copy model is a plain deep model of its grown depth: it loads at that depth only (its copies
        # have no base layer to follow to another plan, allow_other_plan or not)
        raise CheckpointError(
            f'{name} holds a progressive (growth={saved_growth!r}) backbone of {_plans_text(sources)}, the model '
            f'has {_plans_text(own_sources)}: its layer copies load only at the depth they were saved at. Build '
            f'it with --cfg-options model.backbone.{depth_key}={_option_value(depth_value)}')
    if plain:
        return
    fixes: List[str] = []
    what: List[str] = []
    if saved is not None or 'adapter' in meta:
        saved_cfg = plain_data(adapter) if adapter else None
        own_cfg = plain_data(model.adapter_cfg) if model.adapter_cfg else None
        if saved_cfg != own_cfg:
            what.append(f'adapter {saved_cfg} (model: {own_cfg})')
            if saved_cfg is None:
                fixes.append('model.backbone.adapter=None')
            elif own_cfg is None or saved_cfg.get('type') != own_cfg.get('type'):
                fixes.append(' '.join(f'model.backbone.adapter.{k}={_option_value(v)}' for k, v in saved_cfg.items()))
            else:
                fixes.append(' '.join(f'model.backbone.adapter.{k}={_option_value(v)}' for k, v in saved_cfg.items()
                                      if own_cfg.get(k) != v))
    if (saved is not None or 'function_preserving' in meta) and bool(gates) != bool(model.function_preserving):
        what.append(f'function_preserving={bool(gates)} (model: {model.function_preserving})')
        fixes.append(f'model.backbone.function_preserving={bool(gates)}')
    other_plan = sources is not None and not allow_other_plan and \
        tuple(tuple(s) for s in sources) != tuple(own_sources)
    if other_plan:
        what.append(f'{_plans_text(sources)} (model: {_plans_text(own_sources)})')
        fixes.append(f'model.backbone.{depth_key}={_option_value(depth_value)} '
                     f'model.backbone.mapping={_mapping_option(sources, bases)}')
    if what:
        raise CheckpointError(
            f'{name} was saved from another ScaleNet backbone than the config builds: {"; ".join(what)}. Build '
            f'the checkpoint\'s backbone with --cfg-options {" ".join(fixes)}'
            + (' (or continue at another depth on purpose with init_cfg.allow_other_plan=True)' if other_plan else ''))
