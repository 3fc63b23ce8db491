"""Per-position adjustment parameters: parallel adapters and LoRA (pure torch).

Both start as an exact no-op (the up-projection / ``B`` matrix is zero), so an inserted position starts as an exact
copy of its source layer. Every kind sits behind :class:`Adapter`'s interface (the base class is the no-op adapter),
built by :func:`build_adapters`; a position runs their fused kernels (production) or their reference path (the
readable definition the tests compare with). Under ``torch.jit.trace`` and ``torch.fx`` the fused input projection
runs as plain ops (the same forward arithmetic), so traced graphs hold no autograd Function.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ADAPTER_TYPES = ('ParallelAdapter', 'LoRA')
ADAPTER_SITES = ('attn', 'mlp')
LORA_TARGETS = ('qkv', 'proj', 'fc1', 'fc2')

_DEFAULTS: Dict[str, Dict[str, Any]] = {
    # bottleneck 8: DeiT-S grown 2x holds 0.516x the unique parameters of timm's 24-layer DeiT-S (+1.4 % over
    # DeiT-S), DeiT-B 2x 0.508x; the paper's 'almost no extra parameters'. Raise it for more per-position capacity.
    'ParallelAdapter': dict(bottleneck=8, sites=ADAPTER_SITES, scale=1.0),
    'LoRA': dict(rank=8, alpha=16.0, targets=LORA_TARGETS),
}


def parse_adapter_cfg(cfg: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """Validate an adapter config and fill in its defaults; ``None`` means no adapters."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise TypeError(f'adapter must be a dict like dict(type="ParallelAdapter", bottleneck=16) or None, '
                        f'got {type(cfg).__name__}')
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind not in ADAPTER_TYPES:
        raise ValueError(f'unknown adapter type {kind!r}: supported types are {ADAPTER_TYPES} (or adapter=None)')
    out = dict(_DEFAULTS[kind])
    # Switching the type from the command line (--cfg-options model.backbone.adapter.type=LoRA) keeps the keys the
    # config set for the other type: those are dropped, with a warning; any other unknown key is an error.
    foreign = sorted(k for k in set(cfg) - set(out) if any(k in d for d in _DEFAULTS.values()))
    if foreign:
        warnings.warn(f'adapter type {kind}: ignoring {foreign}, which belong to another adapter type (set by the '
                      f'config before its type was changed?)', stacklevel=2)
        for k in foreign:
            cfg.pop(k)
    unknown = sorted(set(cfg) - set(out))
    if unknown:
        raise TypeError(f'{kind} got unknown arguments {unknown}; it accepts {sorted(out)}')
    out.update(cfg)
    if kind == 'ParallelAdapter':
        _check_positive_int(out, 'bottleneck', kind)
        out['sites'] = _check_subset(out['sites'], ADAPTER_SITES, 'sites', kind)
        out['scale'] = _check_finite_number(out, 'scale', kind)
    else:
        _check_positive_int(out, 'rank', kind)
        out['alpha'] = _check_finite_number(out, 'alpha', kind)
        out['targets'] = _check_subset(out['targets'], LORA_TARGETS, 'targets', kind)
    out['type'] = kind
    return out


def _check_finite_number(cfg: Dict[str, Any], key: str, kind: str) -> float:
    """A finite real number (NaN / inf would make every output non-finite from the first step)."""
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f'{kind}.{key} must be a finite number, got {value!r}')
    return float(value)


def _check_positive_int(cfg: Dict[str, Any], key: str, kind: str) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{kind}.{key} must be a positive integer, got {value!r}')


def _check_subset(values: Any, allowed: Tuple[str, ...], key: str, kind: str) -> Tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f'{kind}.{key}={values!r} is invalid: choose one or more of {allowed}')
    return tuple(v for v in allowed if v in values)  # canonical order, no duplicates


class Adapter(nn.Module):
    """The no-op adapter, and the interface of every adapter: what a depth position adds to one sub-layer
    (attention or MLP) of its shared block.

    A sub-layer has two shared projections, ``first`` (qkv / fc1) and ``second`` (proj / fc2). The position runs
    them through its adapter: ``y, carry = fused_in(h, first)``, then ``fused_out(h2, second, carry)``. The adapter
    runs the host projection itself because its fast path fuses both into one kernel (one autograd node for the
    input gradient, one in-place ``addmm_`` for the output); ``reference_in`` / ``reference_out`` are the readable
    definition (tests; ``set_fused(False)`` switches a model to it). ``merged_weights`` gives
    the weights of a plain sub-layer computing the same function (export); ``not_mergeable`` says why there is none.
    """

    #: None when the adapter merges into its sub-layer's weights, else the reason it cannot
    not_mergeable: Optional[str] = None

    def fused_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, Any]:
        """The fast path of the first projection: ``(first(h) with the adapter applied, carry)``."""
        return F.linear(h, first.weight, first.bias), None

    def fused_out(self, h: torch.Tensor, second: nn.Linear, carry: Any) -> torch.Tensor:
        """The fast path of the second projection, given the ``carry`` of :meth:`fused_in`."""
        return F.linear(h, second.weight, second.bias)

    def reference_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, Any]:
        return self.fused_in(h, first)

    def reference_out(self, h: torch.Tensor, second: nn.Linear, carry: Any) -> torch.Tensor:
        return self.fused_out(h, second, carry)

    def merged_weights(self, first: torch.Tensor, second: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The weights of the two projections (``first``, ``second``: the shared ones) of a plain sub-layer that
        computes what the adapted one computes; ``ValueError`` saying why when there are none."""
        if self.not_mergeable:
            raise ValueError(self.not_mergeable)
        return first, second


class ParallelAdapter(Adapter):
    """AdaptFormer-style bottleneck branch beside a sub-layer: ``scale * up(relu(down(h)))``.

    ``h`` is the sub-layer's normalised input; the result is added to the sub-layer's output. ``up`` starts at zero.
    The fast path computes ``down(h)`` together with the first projection and adds the branch in place into the
    second's output.
    """

    not_mergeable = ('a ParallelAdapter adds up(relu(down(h))) beside its sub-layer, and the ReLU between the two '
                     'projections means no change to the block\'s own weights computes the same function (only '
                     'linear adapters such as LoRA merge)')

    def __init__(self, dim: int, bottleneck: int = 8, scale: float = 1.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        self.reset_parameters()

    @classmethod
    def build(cls, cfg: Mapping[str, Any], dim: int, hidden: int) -> Tuple[Adapter, Adapter, None]:
        """The attention and MLP adapters of one position (a no-op where ``cfg['sites']`` leaves a site out)."""
        make = [cls(dim, cfg['bottleneck'], cfg['scale']) if site in cfg['sites'] else Adapter()
                for site in ADAPTER_SITES]
        return make[0], make[1], None

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(h))) * self.scale

    def reference_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, torch.Tensor]:
        return F.linear(h, first.weight, first.bias), self.down(h)

    def reference_out(self, h: torch.Tensor, second: nn.Linear, down: torch.Tensor) -> torch.Tensor:
        return F.linear(h, second.weight, second.bias) + self.up(torch.relu(down)) * self.scale

    def fused_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(first(h), down(h))``; the backward adds the adapter's input gradient into the projection's with one
        in-place ``addmm_``, where autograd would allocate a second input gradient and sum the two."""
        if torch.jit.is_tracing() or _fx_tracing():  # FLOP counters / torch.fx: the same products, as plain ops
            return self.reference_in(h, first)
        return _autocast_apply(_LinearWithDown, h, first.weight, first.bias, self.down.weight, self.down.bias)

    def fused_out(self, h: torch.Tensor, second: nn.Linear, down: torch.Tensor) -> torch.Tensor:
        """``second(h) + scale * up(relu(down))``: the up-bias is folded into the projection's bias and the
        up-projection is added in place into the projection's output (``addmm_``), so the branch allocates no
        tensor of the output's size."""
        if torch.jit.is_tracing():  # the in-place addmm_ is invisible to FLOP counters
            return self.reference_out(h, second, down)
        weight, bias = second.weight, second.bias
        bias = self.up.bias * self.scale if bias is None else torch.add(bias, self.up.bias, alpha=self.scale)
        y = torch.addmm(bias, h.reshape(-1, h.shape[-1]), weight.t())
        r = torch.relu(down).reshape(-1, down.shape[-1])
        # in place on a fresh (non-view) tensor: addmm's backward needs its inputs, not its output, so autograd
        # allows it; .to() matches autocast's dtype for the in-place op (a no-op in fp32)
        # up.weight.t() made contiguous: autograd then computes its gradient as r^T @ grad (bottleneck x dim),
        # several times faster on CPU than the grad^T @ r it picks for a transposed view
        # rebound to its result: torch.fx would drop an in-place op whose result nobody uses
        y = y.addmm_(r.to(y.dtype), self.up.weight.t().contiguous().to(y.dtype), alpha=self.scale)
        return y.unflatten(0, h.shape[:-1])   # a view; no tuple arithmetic on sizes (torch.fx, TorchScript)


_fx_flag = getattr(torch.fx._symbolic_trace, '_get_is_fx_tracing', torch.fx._symbolic_trace.is_fx_tracing)


def _fx_tracing() -> bool:
    """True while torch.fx traces; under torch.compile False without reading fx's thread-local flag (which would
    break dynamo's graph)."""
    return not torch.compiler.is_compiling() and _fx_flag()


def _autocast_apply(fn, *tensors: Optional[torch.Tensor]):
    """``fn.apply(*tensors)`` with autocast's cast done outside: the Function then sees one dtype throughout."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return fn.apply(*tensors)
    dtype = torch.get_autocast_dtype(device)
    cast = [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]
    with torch.autocast(device, enabled=False):
        return fn.apply(*cast)


class _LinearWithDown(torch.autograd.Function):
    """``y = h W^T + b`` and ``d = h Wd^T + bd``; backward: ``grad_h = gy W`` then ``grad_h += gd Wd`` in place."""

    @staticmethod
    def forward(ctx, h, weight, bias, down_weight, down_bias):
        ctx.save_for_backward(h, weight, down_weight)
        ctx.has_bias = bias is not None
        return F.linear(h, weight, bias), F.linear(h, down_weight, down_bias)

    @staticmethod
    def backward(ctx, grad_y, grad_d):
        h, weight, down_weight = ctx.saved_tensors
        h2 = h.reshape(-1, h.shape[-1])
        gy = grad_y.reshape(-1, grad_y.shape[-1])
        gd = grad_d.reshape(-1, grad_d.shape[-1])
        need = ctx.needs_input_grad
        grad_h = gy.mm(weight).addmm_(gd, down_weight).view(h.shape) if need[0] else None
        grad_w = gy.t().mm(h2) if need[1] else None
        grad_b = gy.sum(0) if ctx.has_bias and need[2] else None
        grad_dw = gd.t().mm(h2) if need[3] else None
        grad_db = gd.sum(0) if need[4] else None
        return grad_h, grad_w, grad_b, grad_dw, grad_db


class LoRA(nn.Module):
    """Low-rank delta ``(alpha / rank) * B @ A`` on one shared linear weight; ``B`` starts at zero.

    Mergeable: ``merged(weight)`` returns the effective weight. The fast path adds the delta to the shared weight
    once per forward (an ``out x in x rank`` product), far cheaper than an extra pass over the activations.
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 8, alpha: float = 16.0):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.scaling = alpha / rank
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def merged(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.addmm(weight, self.lora_B, self.lora_A, alpha=self.scaling)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Reference (unmerged) delta output for input ``h``."""
        return F.linear(F.linear(h, self.lora_A), self.lora_B) * self.scaling


class LoRAAdapter(Adapter):
    """A sub-layer's LoRA deltas (on its first and / or second projection) behind the :class:`Adapter` interface.

    The position registers the :class:`LoRA` modules under ``lora.{target}`` (the checkpoint keys); this adapter
    only refers to them (a tuple attribute is not registered), so every tensor has one name.
    """

    def __init__(self, first: Optional[LoRA], second: Optional[LoRA]):
        super().__init__()
        self._deltas = (first, second)

    @classmethod
    def build(cls, cfg: Mapping[str, Any], dim: int, hidden: int) -> Tuple[Adapter, Adapter, nn.ModuleDict]:
        """The attention and MLP adapters of one position, and the ``ModuleDict`` of the deltas they use."""
        shapes = dict(qkv=(dim, 3 * dim), proj=(dim, dim), fc1=(dim, hidden), fc2=(hidden, dim))
        lora = nn.ModuleDict({t: LoRA(*shapes[t], rank=cfg['rank'], alpha=cfg['alpha']) for t in cfg['targets']})
        sites = [(lora[a] if a in lora else None, lora[b] if b in lora else None)
                 for a, b in (('qkv', 'proj'), ('fc1', 'fc2'))]
        attn, mlp = (cls(*pair) if any(d is not None for d in pair) else Adapter() for pair in sites)
        return attn, mlp, lora

    def extra_repr(self) -> str:
        return f'first={self._deltas[0] is not None}, second={self._deltas[1] is not None}'

    def _merged(self, i: int, weight: torch.Tensor) -> torch.Tensor:
        delta = self._deltas[i]
        return weight if delta is None else delta.merged(weight)

    def fused_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, None]:
        return F.linear(h, self._merged(0, first.weight), first.bias), None

    def fused_out(self, h: torch.Tensor, second: nn.Linear, carry: Any) -> torch.Tensor:
        return F.linear(h, self._merged(1, second.weight), second.bias)

    def _reference(self, i: int, h: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        y, delta = F.linear(h, linear.weight, linear.bias), self._deltas[i]
        return y if delta is None else y + delta(h)

    def reference_in(self, h: torch.Tensor, first: nn.Linear) -> Tuple[torch.Tensor, None]:
        return self._reference(0, h, first), None

    def reference_out(self, h: torch.Tensor, second: nn.Linear, carry: Any) -> torch.Tensor:
        return self._reference(1, h, second)

    def merged_weights(self, first: torch.Tensor, second: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._merged(0, first), self._merged(1, second)


_BUILDERS = {'ParallelAdapter': ParallelAdapter.build, 'LoRA': LoRAAdapter.build}


def build_adapters(cfg: Optional[Mapping[str, Any]], dim: int,
                   hidden: int) -> Tuple[Adapter, Adapter, Optional[nn.ModuleDict]]:
    """(attention adapter, MLP adapter, LoRA deltas or None) of one position, from a parsed adapter config."""
    if cfg is None:
        return Adapter(), Adapter(), None
    return _BUILDERS[cfg['type']](cfg, dim, hidden)

