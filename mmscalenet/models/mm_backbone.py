"""``ScaleNetViT`` as an mmengine ``BaseModule`` (OpenMMLab glue; registered as ``ScaleNetViT`` in mmdet's MODELS).

The pure-torch :class:`~mmscalenet.models.vit.ScaleNetViT` only knows ``init_cfg=dict(type='Pretrained', ...)``.
Built from a config, the backbone is this subclass instead: same arguments, same state dict, plus every mmengine
initializer in ``init_cfg`` (``TruncNormal``, ``Kaiming``, ``Constant``, ..., a list of them, ``override``), and
``Pretrained`` with ``prefix`` (load the keys under that prefix only, e.g. ``'backbone.'`` of a detector).
"""
import copy
import inspect
from typing import Any, Dict, List, Mapping, Union

from mmengine.model import BaseModule

from ..checkpoint import CheckpointError, load_into_backbone, resolve_checkpoint, split_checkpoint
from .adapters import LoRA, ParallelAdapter
from .vit import ScaleNetViT


class ScaleNetViTModule(ScaleNetViT, BaseModule):
    """:class:`ScaleNetViT` whose ``init_weights`` runs mmengine's initializers, then ``Pretrained`` (expanded).

    Order: mmengine initializers first, then the per-position adapters, LoRA factors and gates are reset to their
    own starting values (zero up-projection / zero B / zero gate: an inserted position starts as a copy of its
    source layer, whatever a ``layer='Linear'`` initializer did to them), then a ``Pretrained`` checkpoint, if any,
    is loaded and expanded to the depth plan.
    """

    def __init__(self, *args: Any, init_cfg: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.init_cfg = copy.deepcopy(init_cfg)  # a dict or a list of dicts, as any BaseModule takes
        _as_list(init_cfg)  # malformed entries fail at build time, not when training starts

    # the same arguments as ScaleNetViT, for tools that inspect constructors (--cfg-options key checks)
    __init__.__signature__ = inspect.signature(ScaleNetViT.__init__)

    def init_weights(self) -> None:
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
            for pos in self.positions:
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

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]], allow_other_plan: bool = False,
                        prefix: str = None, **kwargs: Any) -> Dict[str, Any]:
        """Load and expand a checkpoint; with ``prefix``, only its keys under ``prefix`` (stripped)."""
        if not prefix:
            return super().load_pretrained(checkpoint, allow_other_plan, **kwargs)
        state, meta = split_checkpoint(resolve_checkpoint(checkpoint))
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            heads = sorted({k.split('.', 1)[0] + '.' for k in state})
            where = checkpoint if isinstance(checkpoint, str) else 'the state dict'
            raise CheckpointError(f'init_cfg prefix {prefix!r} matches no key of {where} (its keys start with '
                                  f'{", ".join(heads[:6])})')
        return load_into_backbone(self, {'state_dict': picked, 'meta': {'scalenet': meta}} if meta else picked,
                                  allow_other_plan, **kwargs)


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
