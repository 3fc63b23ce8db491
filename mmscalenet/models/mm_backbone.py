"""The backbones as mmengine ``BaseModule``s with OpenMMLab's backbone conventions (registered as ``ScaleNetViT`` and
``ScaleNetSwin`` in mmdet's MODELS).

The pure-torch :class:`~mmscalenet.models.vit.ScaleNetViT` / :class:`~mmscalenet.models.swin.ScaleNetSwin` only
know ``init_cfg=dict(type='Pretrained', ...)``. Built from a config, a backbone is the subclass here instead: same
arguments, same state dict, plus

* every mmengine initializer in ``init_cfg`` (``TruncNormal``, ``Kaiming``, ``Constant``, ..., a list of them,
  ``override``), and ``Pretrained`` with ``prefix`` (load the keys under that prefix only, e.g. ``'backbone.'``);
* ``frozen_stages``: ViT as mmpretrain's (k > 0: the patch / position embeddings and positions 0..k-1 with the shared
  blocks they run, the final norm too when k is the depth: an inserted position that runs a frozen block then trains
  only its own adapters); Swin as mmdet's (k >= 0: the patch embedding; then stages 0..k-1 with their merging and
  output norms). Frozen parameters get ``requires_grad=False`` and their modules stay in eval mode;
* ``norm_eval``: every normalisation layer stays in eval mode while training (as mmdet's backbones; LayerNorm has no
  running statistics, so it changes nothing there, but configs written for other backbones build).
"""
import copy
import inspect
from typing import Any, Dict, Iterator, List, Mapping, Union

from mmengine.model import BaseModule
from torch import nn

from ..checkpoint import CheckpointError, load_backbone, resolve_checkpoint, split_checkpoint
from .adapters import LoRA, ParallelAdapter
from .swin import ScaleNetSwin
from .vit import ScaleNetViT

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


class _OpenMMLabBackbone(BaseModule):
    """init_cfg (mmengine initializers, then Pretrained), frozen_stages and norm_eval over a grown backbone."""

    def _mm_setup(self, init_cfg: Any, frozen_stages: int, norm_eval: bool, max_stage: int) -> None:
        self.init_cfg = copy.deepcopy(init_cfg)  # a dict or a list of dicts, as any BaseModule takes
        _as_list(init_cfg)  # malformed entries fail at build time, not when training starts
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages <= max_stage:
            raise ValueError(f'frozen_stages must be an integer in [-1, {max_stage}], got {frozen_stages!r}')
        self.frozen_stages, self.norm_eval = frozen_stages, bool(norm_eval)
        self._freeze()

    def _frozen_modules(self) -> Iterator[nn.Module]:
        raise NotImplementedError

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            if isinstance(m, nn.Module):
                m.eval()
            for p in (m.parameters() if isinstance(m, nn.Module) else [m]):
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'nn.Module':
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                if isinstance(m, nn.Module):
                    m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, _NORMS):
                        m.eval()
        return self

    def _positions(self) -> Iterator[nn.Module]:
        raise NotImplementedError

    def init_weights(self) -> None:
        """mmengine initializers first; then the per-position adapters, LoRA factors and gates are reset to their
        own starting values (zero up-projection / zero B / zero gate: an inserted position starts as a copy of its
        source layer, whatever a ``layer='Linear'`` initializer did to them); then ``Pretrained``, expanded."""
        cfgs = _as_list(self.init_cfg)
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if len(pretrained) > 1:
            raise ValueError(f'init_cfg has {len(pretrained)} Pretrained entries; give one checkpoint')
        if others:
            saved, self.init_cfg = self.init_cfg, others
            self._is_init = False
            try:
                BaseModule.init_weights(self)
            finally:
                self.init_cfg = saved
            for pos in self._positions():
                for m in pos.modules():
                    if isinstance(m, (ParallelAdapter, LoRA)):
                        m.reset_parameters()
                for gate in (pos.gate_attn, pos.gate_mlp):
                    if gate is not None:
                        gate.data.zero_()
        if pretrained:
            cfg = pretrained[0]
            if not cfg.get('checkpoint'):
                raise ValueError('init_cfg=dict(type="Pretrained") needs a checkpoint path, URL or "timm:NAME"')
            self.load_pretrained(cfg['checkpoint'], bool(cfg.get('allow_other_plan', False)), prefix=cfg.get('prefix'))
        self._is_init = True

    def _load_prefixed(self, checkpoint: Union[str, Mapping[str, Any]], prefix: str, load: Any,
                       allow_other_plan: bool, **kwargs: Any) -> Dict[str, Any]:
        """Load only the keys of ``checkpoint`` under ``prefix`` (stripped) with ``load``."""
        state, meta = split_checkpoint(resolve_checkpoint(checkpoint))
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            heads = sorted({k.split('.', 1)[0] + '.' for k in state})
            where = checkpoint if isinstance(checkpoint, str) else 'the state dict'
            raise CheckpointError(f'init_cfg prefix {prefix!r} matches no key of {where} (its keys start with '
                                  f'{", ".join(heads[:6])})')
        return load(self, {'state_dict': picked, 'meta': {'scalenet': meta}} if meta else picked,
                    allow_other_plan, **kwargs)


def _signature(cls: type) -> inspect.Signature:
    """``cls.__init__``'s signature plus ``frozen_stages`` and ``norm_eval`` (tools read it: --cfg-options keys)."""
    sig = inspect.signature(cls.__init__)
    extra = [inspect.Parameter('frozen_stages', inspect.Parameter.KEYWORD_ONLY, default=-1),
             inspect.Parameter('norm_eval', inspect.Parameter.KEYWORD_ONLY, default=False)]
    params = list(sig.parameters.values())
    return sig.replace(parameters=params + extra)


class ScaleNetViTModule(ScaleNetViT, _OpenMMLabBackbone):
    """:class:`ScaleNetViT` as a BaseModule with mmengine's ``init_cfg``, ``frozen_stages`` and ``norm_eval``."""

    def __init__(self, *args: Any, init_cfg: Any = None, frozen_stages: int = -1, norm_eval: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._mm_setup(init_cfg, frozen_stages, norm_eval, len(self.positions))

    __init__.__signature__ = _signature(ScaleNetViT)
    init_weights = _OpenMMLabBackbone.init_weights

    def _positions(self) -> Iterator[nn.Module]:
        return iter(self.positions)

    def _frozen_modules(self) -> Iterator[Any]:
        k = self.frozen_stages
        if k <= 0:
            return
        yield self.patch_embed
        yield self.pos_embed
        if self.cls_token is not None:
            yield self.cls_token
        for p in range(k):
            yield self.positions[p]
            yield self.blocks[self.plan.sources[p]]
        if k == len(self.positions) and self.norm is not None:
            yield self.norm

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False,
                        prefix: str = None, **kwargs: Any) -> Dict[str, Any]:
        """Load and expand a checkpoint; with ``prefix``, only its keys under ``prefix`` (stripped)."""
        if not prefix:
            return super().load_pretrained(checkpoint, allow_other_plan, **kwargs)
        return self._load_prefixed(checkpoint, prefix, load_backbone, allow_other_plan, **kwargs)


class ScaleNetSwinModule(ScaleNetSwin, _OpenMMLabBackbone):
    """:class:`ScaleNetSwin` as a BaseModule with mmengine's ``init_cfg``, ``frozen_stages`` and ``norm_eval``."""

    def __init__(self, *args: Any, init_cfg: Any = None, frozen_stages: int = -1, norm_eval: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._mm_setup(init_cfg, frozen_stages, norm_eval, len(self.layers))

    __init__.__signature__ = _signature(ScaleNetSwin)
    init_weights = _OpenMMLabBackbone.init_weights

    def _positions(self) -> Iterator[nn.Module]:
        return (pos for stage in self.layers for pos in stage.positions)

    def _frozen_modules(self) -> Iterator[Any]:
        k = self.frozen_stages
        if k < 0:
            return
        yield self.patch_embed
        for s in range(k):
            yield self.layers[s]
            if hasattr(self, f'norm{s}'):
                yield getattr(self, f'norm{s}')

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False,
                        prefix: str = None, **kwargs: Any) -> Dict[str, Any]:
        """Load and expand a Swin checkpoint; with ``prefix``, only its keys under ``prefix`` (stripped)."""
        if not prefix:
            return super().load_pretrained(checkpoint, allow_other_plan, **kwargs)
        return self._load_prefixed(checkpoint, prefix, load_backbone, allow_other_plan, **kwargs)


def _as_list(init_cfg: Any) -> List[Dict[str, Any]]:
    if not init_cfg:
        return []
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    out = []
    for c in cfgs:
        if not isinstance(c, Mapping) or 'type' not in c:
            raise TypeError(f'init_cfg entries must be dicts with a "type", got {c!r}')
        out.append(copy.deepcopy(dict(c)))
    return out
