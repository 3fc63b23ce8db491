"""ScaleNet depth plans and checkpoint expansion (pure torch: no OpenMMLab imports).

A *depth plan* says which pretrained layer each position of the grown model uses. Position ``p`` of a model of
depth ``D`` grown from a base of depth ``L`` runs base layer ``g(p)``; the weights of base layer ``j`` are stored
once, under timm's names ``blocks.{j}.*``, whatever the number of positions that use them. Per-position
parameters (adapters, gates, own norms, relative-position tables) live under ``positions.{p}.*``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

MappingSpec = Union[str, Sequence[int]]
MAPPINGS = ('cyclic', 'interleave')

# Tensors of a timm block that ScaleNet always shares between the positions using that block.
SHARED_SUBMODULES = ('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')
# Tensors that are shared by default and can be made per-position with ``unshared=('norm',)``.
OPTIONAL_SHARED = {'norm': ('norm1', 'norm2')}

_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(.+)$')


@dataclass(frozen=True)
class DepthPlan:
    """Which base layer each position of the grown model uses.

    ``sources[p]`` is g(p). The first position that uses a base layer is its *original* position, the later ones
    are *inserted*.
    """

    base_depth: int
    sources: Tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.sources)

    @property
    def original_positions(self) -> Tuple[int, ...]:
        """``original_positions[j]``: the first position that uses base layer ``j``."""
        first: Dict[int, int] = {}
        for p, j in enumerate(self.sources):
            first.setdefault(j, p)
        return tuple(first[j] for j in range(self.base_depth))

    @property
    def inserted(self) -> Tuple[bool, ...]:
        """``inserted[p]`` is True when position ``p`` re-uses a layer that an earlier position already runs."""
        originals = set(self.original_positions)
        return tuple(p not in originals for p in range(self.depth))

    def positions_of(self, layer: int) -> Tuple[int, ...]:
        return tuple(p for p, j in enumerate(self.sources) if j == layer)

    def describe(self) -> str:
        """Human-readable table: position -> base layer (original / inserted)."""
        lines = [f'depth plan: {self.base_depth} base layers -> {self.depth} positions']
        for p, (j, new) in enumerate(zip(self.sources, self.inserted)):
            lines.append(f'  position {p:3d} <- base layer {j:3d}  ({"inserted" if new else "original"})')
        return '\n'.join(lines)


def make_depth_plan(base_depth: int, depth: Optional[int] = None, mapping: MappingSpec = 'cyclic') -> DepthPlan:
    """Build and validate a depth plan.

    Args:
        base_depth: L, number of pretrained layers.
        depth: D >= L, number of positions of the grown model (default: L).
        mapping: ``'cyclic'`` (g(p) = p mod L, the paper's default), ``'interleave'`` (g(p) = floor(p L / D), each
            layer repeated in place) or an explicit list of D indices in [0, L) that uses every base layer.
    """
    if isinstance(base_depth, bool) or not isinstance(base_depth, int) or base_depth < 1:
        raise ValueError(f'base depth must be a positive integer, got {base_depth!r}')
    if depth is None:
        depth = len(mapping) if not isinstance(mapping, str) else base_depth
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f'depth must be an integer, got {type(depth).__name__} {depth!r}')
    if depth < base_depth:
        raise ValueError(f'depth D={depth} is smaller than the base depth L={base_depth}: ScaleNet only grows '
                         f'models (D >= L)')
    if isinstance(mapping, str):
        if mapping == 'cyclic':
            sources = [p % base_depth for p in range(depth)]
        elif mapping == 'interleave':
            sources = [p * base_depth // depth for p in range(depth)]
        else:
            raise ValueError(f'unknown mapping {mapping!r}: use one of {MAPPINGS} or a list of {depth} layer '
                             f'indices')
    else:
        try:
            sources = [int(j) if not isinstance(j, bool) and int(j) == j else None for j in mapping]
        except (TypeError, ValueError):
            raise TypeError(f'mapping must be {MAPPINGS} or a list of integers, got {mapping!r}') from None
        if any(j is None for j in sources):
            raise TypeError(f'mapping list must hold integers, got {list(mapping)!r}')
        if len(sources) != depth:
            raise ValueError(f'mapping list has {len(sources)} entries but depth D={depth}: give one base-layer '
                             f'index per position')
        bad = [j for j in sources if not 0 <= j < base_depth]
        if bad:
            raise ValueError(f'mapping list entries {bad} are out of range: base layers are 0..{base_depth - 1}')
        unused = sorted(set(range(base_depth)) - set(sources))
        if unused:
            raise ValueError(f'mapping list never uses base layers {unused}: every pretrained layer must run at '
                             f'least once (unused shared weights would receive no gradient)')
    return DepthPlan(base_depth=base_depth, sources=tuple(sources))


def drop_path_rates(depth: int, max_rate: float) -> List[float]:
    """Stochastic-depth rate per position, linear from 0 to ``max_rate`` over the grown depth."""
    if depth == 1:
        return [0.0]
    return [max_rate * p / (depth - 1) for p in range(depth)]


def spread_indices(depth: int, count: int) -> Tuple[int, ...]:
    """``count`` positions spread evenly over ``depth``, ending at the last one (ViTDet's global blocks)."""
    if count <= 0:
        return ()
    count = min(count, depth)
    return tuple(sorted({(k + 1) * depth // count - 1 for k in range(count)}))


# Per-position copies made at expansion for each ``unshared`` name: (key inside a block, key inside a position). A
# family validates which names it takes (the ViT: 'norm'; the Swin: 'norm', 'rel_pos').
PER_POSITION_KEYS = {'norm': (('norm1.', 'norm1.'), ('norm2.', 'norm2.')),
                     'rel_pos': (('attn.relative_position_bias_table', 'relative_position_bias_table'),)}


def _per_position_key(rest: str, unshared: Iterable[str]) -> Optional[str]:
    """The position key of block key ``rest`` when ``unshared`` makes it per position, else None."""
    for name in unshared:
        for block_key, position_key in PER_POSITION_KEYS.get(name, ()):
            if rest.startswith(block_key):
                return position_key + rest[len(block_key):]
    return None


def expand_state_dict(base: Mapping[str, torch.Tensor], plan: DepthPlan, unshared: Iterable[str] = (),
                      prefix: str = '') -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """Turn the plain (timm-layout) state dict of one stack of depth L into the grown stack's state dict.

    The stack's keys start with ``prefix`` (``''`` for the ViT trunk, ``'layers.{s}.'`` for a Swin stage). Shared
    tensors stay once under ``{prefix}blocks.{j}``; tensors made per-position (``unshared``, see
    :data:`PER_POSITION_KEYS`) are copied to ``{prefix}positions.{p}.*`` from the source layer g(p). Other keys pass
    through unchanged; blocks beyond the plan's base depth are left out. Returns the new state dict and a report
    ``{'copied': [the per-position keys made]}``.
    """
    unshared = (unshared,) if isinstance(unshared, str) else tuple(unshared)
    unknown = [u for u in unshared if u not in PER_POSITION_KEYS]
    if unknown:
        raise ValueError(f'unshared={unknown} is not supported: choose from {tuple(PER_POSITION_KEYS)} (attention '
                         f'and MLP weights are always shared)')
    pattern = re.compile('^' + re.escape(prefix) + r'blocks\.(\d+)\.(.+)$')
    out: Dict[str, torch.Tensor] = {}
    report: Dict[str, List[str]] = {'copied': []}
    for key, value in base.items():
        m = pattern.match(key)
        if not m:
            out[key] = value
            continue
        j, rest = int(m.group(1)), m.group(2)
        if j >= plan.base_depth:
            continue
        local = _per_position_key(rest, unshared)
        if local is not None:
            for p in plan.positions_of(j):
                out[f'{prefix}positions.{p}.{local}'] = value.clone()
                report['copied'].append(f'{prefix}positions.{p}.{local}')
        else:
            out[key] = value
    return out, report


def expand_stacks(base: Mapping[str, torch.Tensor], stacks: Sequence[Tuple[str, DepthPlan]],
                  unshared: Iterable[str] = ()) -> Tuple[Dict[str, torch.Tensor], Dict[str, List[str]]]:
    """:func:`expand_state_dict` for every (prefix, plan) stack of a backbone (``model.growth_stacks()``)."""
    out, copied = dict(base), []
    for prefix, plan in stacks:
        out, report = expand_state_dict(out, plan, unshared, prefix)
        copied.extend(report['copied'])
    return out, {'copied': copied}


def untie_state_dict(state: Mapping[str, torch.Tensor], plan: DepthPlan, prefix: str = '') -> Dict[str, torch.Tensor]:
    """Inverse view for export: the plain (timm) state dict of one stack of depth D, block ``p`` a copy of its
    shared layer (keys under ``prefix``).

    Expects a state dict whose per-position tensors already use timm names (``positions.{p}.norm1.*``); adapters
    must be merged into the block weights or absent (the caller checks that).
    """
    block = re.compile('^' + re.escape(prefix) + r'blocks\.(\d+)\.(.+)$')
    position = re.compile('^' + re.escape(prefix) + r'positions\.(\d+)\.(.+)$')
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = block.match(key)
        if m:
            j, rest = int(m.group(1)), m.group(2)
            for p in plan.positions_of(j):
                out[f'{prefix}blocks.{p}.{rest}'] = value.clone()
            continue
        m = position.match(key)
        if m:
            out[f'{prefix}blocks.{m.group(1)}.{m.group(2)}'] = value.clone()
            continue
        out[key] = value.clone()
    return out


def _unshared_names(unshared: Iterable[str]) -> Tuple[str, ...]:
    if isinstance(unshared, str):
        unshared = (unshared,)
    names: List[str] = []
    for item in unshared:
        if item not in OPTIONAL_SHARED:
            raise ValueError(f'unshared={item!r} is not supported: choose from {tuple(OPTIONAL_SHARED)} '
                             f'(attention and MLP weights are always shared)')
        names.extend(OPTIONAL_SHARED[item])
    return tuple(names)


# ---- growth modes: ScaleNet against the paper's foil -----------------------------------------------------------------
#: How the positions of a grown model get their layers. ``'shared'``: ScaleNet (each base layer stored once, run by
#: every position its plan maps to it). ``'copy'``: progressive growth / stacking, the paper's foil (each position
#: stores its own copy of the layer its plan maps it to: a plain deep model, twice the parameters at 2x).
#: ``'copy_zero'``: the copies of inserted positions start with their output projections zeroed, so the grown model
#: computes the pretrained one at step 0 (the function-preserving foil, LLaMA-Pro / Net2Net style).
GROWTH_MODES = ('shared', 'copy', 'copy_zero')
# The tensors zeroed in the inserted copies of ``'copy_zero'``: with both output projections at 0 a pre-norm block
# adds nothing to its residual stream (it is the identity).
ZEROED_IN_INSERTED_COPIES = ('attn.proj.weight', 'attn.proj.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')


def check_growth(growth: Any) -> str:
    if growth not in GROWTH_MODES:
        raise ValueError(f'growth must be one of {GROWTH_MODES} (shared: ScaleNet; copy / copy_zero: progressive '
                         f'growth, independent copies), got {growth!r}')
    return growth


def default_adapter(adapter: Any, growth: str) -> Any:
    """``adapter='auto'`` (the backbones' default): parallel adapters for ScaleNet, none for the copies (the foil as
    the paper draws it: its positions differ by their own weights already)."""
    if isinstance(adapter, str) and adapter == 'auto':
        return dict(type='ParallelAdapter') if growth == 'shared' else None
    return adapter


def stored_plan(plan: DepthPlan, growth: str) -> DepthPlan:
    """The plan of the layers a model stores and runs: the growth plan itself for ``'shared'``; for the copies one
    layer per position (the identity plan of depth D): a plain deep model, whose save / load / export / layer decay
    are those of an ordinary ViT or Swin of the grown depth. The growth plan only says where the copies come from."""
    return plan if growth == 'shared' else make_depth_plan(plan.depth, plan.depth)


def stored_layer_count(state: Mapping[str, torch.Tensor], prefix: str = '') -> int:
    """How many layers ``{prefix}blocks.{j}`` a state dict holds (1 + the highest index; 0 for none)."""
    pattern = re.compile('^' + re.escape(prefix) + r'blocks\.(\d+)\.')
    found = [int(m.group(1)) for m in map(pattern.match, state) if m]
    return max(found) + 1 if found else 0


def copy_layers(state: Mapping[str, torch.Tensor], plan: DepthPlan, prefix: str = '',
                zero_inserted: bool = False) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Progressive growth of one stack at load: the plain state dict of depth L (``{prefix}blocks.{j}``, j < L) to
    depth D, ``blocks.{p}`` an independent copy (a clone, no shared storage) of ``blocks.{plan.sources[p]}``. A base
    saved in the ScaleNet layout keeps per-position tensors of its own (norms, bias tables) under
    ``positions.{j}``: position p takes a copy of those of ``plan.sources[p]`` too.

    ``zero_inserted`` zeroes :data:`ZEROED_IN_INSERTED_COPIES` in the copies of inserted positions
    (``plan.inserted``), so the grown stack computes the base one. Other keys pass through. Returns the new state and
    the keys zeroed.
    """
    patterns = {kind: re.compile('^' + re.escape(prefix) + kind + r'\.(\d+)\.(.+)$')
                for kind in ('blocks', 'positions')}
    layers: Dict[int, Dict[str, torch.Tensor]] = {}
    own: Dict[int, Dict[str, torch.Tensor]] = {}
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = patterns['blocks'].match(key)
        n = patterns['positions'].match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif n:
            own.setdefault(int(n.group(1)), {})[n.group(2)] = value
        else:
            out[key] = value
    missing = sorted(set(range(plan.base_depth)) - set(layers))
    if missing:
        raise ValueError(f'cannot copy layers {missing} of {prefix or "the model"}: the state dict lacks them')
    zeroed: List[str] = []
    for p, j in enumerate(plan.sources):
        for rest, value in layers[j].items():
            key = f'{prefix}blocks.{p}.{rest}'
            out[key] = value.clone()
            if zero_inserted and plan.inserted[p] and rest in ZEROED_IN_INSERTED_COPIES:
                out[key].zero_()
                zeroed.append(key)
        for rest, value in own.get(j, {}).items():
            out[f'{prefix}positions.{p}.{rest}'] = value.clone()
    return out, zeroed


def layer_uses(model: torch.nn.Module) -> Dict[Tuple[str, int], int]:
    """``(stack prefix, base layer) -> positions that run it``, over ``model.growth_stacks()`` (empty for a model
    without grown stacks: every layer then runs once)."""
    uses: Dict[Tuple[str, int], int] = {}
    for prefix, plan, _ in (model.growth_stacks() if hasattr(model, 'growth_stacks') else []):
        for j in plan.sources:
            uses[(prefix, j)] = uses.get((prefix, j), 0) + 1
    return uses


def count_parameters(model: torch.nn.Module, base_depth: Optional[int] = None,
                     depth: Optional[int] = None) -> Dict[str, int]:
    """Parameter accounting for a ScaleNet module (or any module).

    ``unique``: each tensor counted once (what the optimizer and the checkpoint hold). ``shared``: tensors under
    ``blocks.*`` (the layers' weights, each run by one or more positions; ``shared_by_several``: those run by two or
    more, 0 for the progressive foil's copies). ``per_position``: tensors under ``positions.*``. ``other``:
    embeddings, final norm, head. ``untied``: what an ordinary ViT of the same depth would hold, i.e. every
    shared block counted once per position that uses it (the plans' layer usage, from ``model.growth_stacks()``
    when it has one).
    """
    seen = set()
    counts = {'unique': 0, 'shared': 0, 'shared_by_several': 0, 'per_position': 0, 'other': 0}
    usage = layer_uses(model)
    untied = 0
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        counts['unique'] += n
        m = re.search(r'(?:^|\.)((?:layers\.\d+\.)?)blocks\.(\d+)\.', name)
        if m:
            uses = usage.get((m.group(1), int(m.group(2))), 1)
            counts['shared'] += n
            counts['shared_by_several'] += n if uses > 1 else 0
            untied += n * uses
        elif re.search(r'(?:^|\.)positions\.\d+\.', name):
            counts['per_position'] += n
            untied += n
        else:
            counts['other'] += n
            untied += n
    counts['untied'] = untied
    return counts


def format_parameter_table(counts: Mapping[str, int], reference: Optional[int] = None) -> str:
    """Markdown table of ``count_parameters`` output (optionally relative to a reference count)."""
    rows = ['| parameters | count | M |', '| --- | ---: | ---: |']
    labels = {'shared': 'blocks (layer weights)', 'shared_by_several': 'of which shared by several positions'}
    for key in ('unique', 'shared', 'shared_by_several', 'per_position', 'other', 'untied'):
        if key in counts:
            rows.append(f'| {labels.get(key, key)} | {counts[key]:,} | {counts[key] / 1e6:.2f} |')
    if reference:
        rows.append(f'| unique / base model | {counts["unique"] / reference:.3f}x | |')
    return '\n'.join(rows)
