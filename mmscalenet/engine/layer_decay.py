"""Layer-wise learning-rate decay for ScaleNet backbones, aware of the weight sharing.

ViTDet / BEiT layer decay gives the parameters of block i of an L-layer ViT the learning rate
``base_lr * rate ** (L + 1 - (i + 1))``: the deepest block trains at ``rate * base_lr``, the patch embedding at
``rate ** (L + 1) * base_lr``, the neck and heads at ``base_lr``. A grown model stores each base layer's tensors
once (``backbone.blocks.{j}``) and runs them at several of its D positions, so "the depth of a tensor" has to be
chosen. ``paramwise_cfg.sharing_rule`` picks the rule:

``'base'`` (default)
    Decay over the **base depth L**, as if the model were the L-layer ViT it was grown from: shared block j gets
    layer id ``j + 1``, exactly its lr in the plain L-layer recipe; the parameters of position p (adapters, LoRA,
    gates, own norms, rel-pos tables) get the base-equivalent id ``(p + 1) * L / D``, so position D - 1 trains like
    block L - 1 and position 0 a little slower than block 0. Embeddings: id 0; neck, heads, final norm: id L + 1.
``'deepest'``
    Decay over D, a shared tensor at the id of the **last** position that runs it (for a cyclic 2x plan this gives
    the shared blocks exactly their plain-recipe lr; positions p keep id ``p + 1`` over D, so early adapters are
    nearly frozen: ``0.7 ** 24`` at D = 24).
``'first'``
    Decay over D, a shared tensor at the id of its **first** (original) position: the rule of the first release.
    It gives the shared blocks of a grown DeiT-S ``rate ** (D - j)``, 1/72 of their plain-recipe lr at D = 24 and
    rate 0.7, so they barely train; kept only to reproduce old runs.

Swin (``ScaleNetSwin``): the same rules, stage by stage, with mmpretrain's Swin numbering: blocks are counted over
all stages (block j of stage s: ``sum(L[:s]) + j + 1``, N = sum of the stages' base depths under ``'base'``, of the
grown depths otherwise), the per-position parameters of position p of stage s get ``sum(L[:s]) + (p + 1) * L_s /
D_s`` under ``'base'``, patch merging the id of the last block before it, output norms N + 1. Under ``'base'`` a
grown Swin-T trains every shared tensor at exactly the lr the plain Swin-T recipe gives it.

lr = ``base_lr * decay_rate ** (N + 1 - layer_id)``, N = L for ``'base'`` and D otherwise; for a plain ViT
(D = L, nothing shared) the three rules coincide with ViTDet's. ``docs/layer_decay.md`` has the comparison of the
rules on the detection stand-in that chose the default. Weight decay is 0 for normalisation layers (anywhere in
the model, as detectron2's ViTDet recipe does), position embeddings, the class token, relative-position tables
(the ViT's ``rel_pos_h`` / ``rel_pos_w``, Swin's bias tables) and the function-preserving gates; ``base_wd`` for everything else. Every parameter is in exactly one group, and
a shared tensor is seen once.

``paramwise_cfg.shared_lr`` (default 1.0) scales the lr of the shared tensors that more than one position runs, on
top of the decay: a number, or ``'per_use'`` for 1 / (the number of positions that run the tensor). A step of a
shared tensor moves every position that runs it, so at the same lr a grown model's function moves further per
step than its untied copy's; ``'per_use'`` gives each use the step an untied copy's layer would take. Off by
default; the demo's segmentation recipe sets it (three seeds: 31.9 -> 48.9 mIoU), its detection recipe does not
(no gain at 200 or 600 iterations), ``docs/detection_transfer.md`` sections 4 and 6.

Config::

    optim_wrapper = dict(constructor='ScaleNetLayerDecayOptimizerConstructor',
                         paramwise_cfg=dict(decay_rate=0.7),    # sharing_rule='base'; num_layers=D optional check
                         optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1))
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..expansion import layer_uses

# Parameter-name patterns (after the model prefix) that never get weight decay.
NO_DECAY_PATTERNS = (r'(^|\.)pos_embed$', r'(^|\.)cls_token$', r'(^|\.)rel_pos_[hw]$', r'(^|\.)gate_(attn|mlp)$',
                     r'(^|\.)relative_position_bias_table$')
_KNOWN_KEYS = ('decay_rate', 'num_layers', 'decay_type', 'sharing_rule', 'shared_lr')


def _norm_types() -> Tuple[type, ...]:
    return (nn.LayerNorm, nn.GroupNorm, _BatchNorm, _InstanceNorm, nn.LocalResponseNorm)


def find_backbone(model: nn.Module) -> Tuple[str, Optional[nn.Module]]:
    """(prefix, module) of the backbone: ``model.backbone`` for detectors / classifiers, or the model itself."""
    if hasattr(model, 'module') and isinstance(model.module, nn.Module):  # DDP / FSDP wrappers
        model = model.module
    if isinstance(getattr(model, 'backbone', None), nn.Module):
        return 'backbone.', model.backbone
    if hasattr(model, 'blocks') or hasattr(model, 'growth_stacks'):   # a bare (grown) ViT / ScaleNetSwin
        return '', model
    return 'backbone.', None


SHARING_RULES = ('base', 'deepest', 'first')


def _stages(backbone: Optional[nn.Module]) -> List[Tuple[str, int, Tuple[int, ...]]]:
    """``(key prefix, base depth, sources)`` per stage: one for a ViT (grown or plain), one per stage for a
    ``ScaleNetSwin`` (``layers.{s}.``); empty when the backbone has neither."""
    if backbone is None:
        return []
    stacks = getattr(backbone, 'growth_stacks', None)
    if stacks is not None:   # a grown backbone: the ViT trunk is one stack, each Swin stage one
        return [(prefix, plan.base_depth, tuple(plan.sources)) for prefix, plan, _ in stacks()]
    depth = len(getattr(backbone, 'blocks', []))   # a plain ViT with ``blocks.{i}``: the usual layer decay
    return [('', depth, tuple(range(depth)))] if depth else []


def layer_id_fn(model: nn.Module, num_layers: Optional[int] = None, sharing_rule: str = 'base'):
    """``(name -> layer id, N)`` for ``model``'s parameter names: lr scale = ``rate ** (N + 1 - layer id)``.

    N is the depth the decay runs over (the base depth L for ``sharing_rule='base'``, the grown depth D
    otherwise); ids may be fractional under ``'base'``. ``num_layers``, if given, must equal the grown depth D.
    A ``ScaleNetSwin`` counts its blocks over all stages (mmpretrain's Swin layer decay: block j of stage s is
    ``sum(depths[:s]) + j + 1``); its patch merging ``layers.{s}.downsample`` gets the id of the last block of
    stage s - 1 (mmpretrain's layout ends stage s - 1 with it); output norms ``norm{i}`` are last (N + 1).
    """
    if sharing_rule not in SHARING_RULES:
        raise ValueError(f'paramwise_cfg.sharing_rule must be one of {list(SHARING_RULES)}, got {sharing_rule!r}')
    prefix, backbone = find_backbone(model)
    stages = _stages(backbone)
    depth = sum(len(sources) for _, _, sources in stages)
    if num_layers is not None and int(num_layers) != depth:
        raise ValueError(f'paramwise_cfg.num_layers={num_layers} but the backbone has depth {depth} (grown depth '
                         f'D for ScaleNet models): set num_layers={depth} or leave it out (it is read from the model)')
    if depth == 0:
        raise ValueError('ScaleNetLayerDecayOptimizerConstructor found no backbone with a depth plan or '
                         '``blocks`` (expected model.backbone to be a ScaleNetViT, a ScaleNetSwin or a ViT)')
    span = sum(base for _, base, _ in stages) if sharing_rule == 'base' else depth
    ids: Dict[Tuple[str, str, int], float] = {}   # (stage prefix, 'blocks' | 'positions', index) -> layer id
    merging: Dict[str, float] = {}                # stage prefix -> id of its patch merging (Swin)
    offset = 0
    for stage, base, sources in stages:
        D = len(sources)
        merging[stage] = offset
        if sharing_rule == 'base':
            ids.update({(stage, 'blocks', j): offset + j + 1 for j in range(base)})
            ids.update({(stage, 'positions', p): offset + (p + 1) * base / D for p in range(D)})
            offset += base
        else:
            uses: Dict[int, List[int]] = {}
            for p, j in enumerate(sources):
                uses.setdefault(j, []).append(p)
            pick = max if sharing_rule == 'deepest' else min
            ids.update({(stage, 'blocks', j): offset + pick(ps) + 1 for j, ps in uses.items()})
            ids.update({(stage, 'positions', p): offset + p + 1 for p in range(D)})
            offset += D
    embed = re.compile(rf'^{re.escape(prefix)}(patch_embed\.|pos_embed$|cls_token$|dist_token$)')
    unit = re.compile(rf'^{re.escape(prefix)}(layers\.\d+\.)?(blocks|positions)\.(\d+)\.')
    downsample = re.compile(rf'^{re.escape(prefix)}(layers\.\d+\.)downsample\.')

    def layer_id(name: str) -> float:
        if embed.match(name):
            return 0
        m = unit.match(name)
        if m and (m.group(1) or '', m.group(2), int(m.group(3))) in ids:
            return ids[(m.group(1) or '', m.group(2), int(m.group(3)))]
        m = downsample.match(name)
        if m and m.group(1) in merging:
            return merging[m.group(1)]
        return span + 1

    return layer_id, span


def shared_uses_fn(model: nn.Module):
    """``name -> k``: how many positions run the tensor ``name`` (k > 1 only for a shared block's tensors)."""
    prefix, backbone = find_backbone(model)
    uses = layer_uses(backbone) if backbone is not None else {}
    unit = re.compile(rf'^{re.escape(prefix)}(layers\.\d+\.)?blocks\.(\d+)\.')

    def count(name: str) -> int:
        m = unit.match(name)
        return uses.get((m.group(1) or '', int(m.group(2))), 1) if m else 1

    return count


def _shared_lr_mult(setting, uses: int) -> float:
    if uses <= 1:
        return 1.0
    return 1.0 / uses if setting == 'per_use' else float(setting)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ScaleNetLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay for grown ViTs and Swins; ``paramwise_cfg.sharing_rule`` places shared tensors (module
    doc; the rule is checked by :func:`layer_id_fn`, when the groups are built)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'decay_rate' not in paramwise_cfg:
            raise ValueError('ScaleNetLayerDecayOptimizerConstructor needs paramwise_cfg=dict(decay_rate=..., '
                             '[num_layers=D]), e.g. decay_rate=0.7')
        unknown = sorted(set(paramwise_cfg) - set(_KNOWN_KEYS))
        if unknown:
            raise ValueError(f'ScaleNetLayerDecayOptimizerConstructor: unknown paramwise_cfg keys {unknown}; it '
                             f'accepts {list(_KNOWN_KEYS)}')
        if paramwise_cfg.get('decay_type', 'layer_wise') != 'layer_wise':
            raise ValueError(f'only decay_type="layer_wise" is supported, got {paramwise_cfg["decay_type"]!r}')
        rate = paramwise_cfg['decay_rate']
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'paramwise_cfg.decay_rate must be in (0, 1], got {rate!r}')
        shared = paramwise_cfg.get('shared_lr', 1.0)
        if shared != 'per_use' and (isinstance(shared, bool) or not isinstance(shared, (int, float)) or shared <= 0):
            raise ValueError(f'paramwise_cfg.shared_lr must be a number > 0 or "per_use", got {shared!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError('ScaleNetLayerDecayOptimizerConstructor needs optimizer.lr')

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        """Fill ``params`` with one group per (layer id, decay / no decay)."""
        rate = float(self.paramwise_cfg['decay_rate'])
        rule = self.paramwise_cfg.get('sharing_rule', 'base')
        layer_id, depth = layer_id_fn(module, self.paramwise_cfg.get('num_layers'), rule)
        uses, shared = shared_uses_fn(module), self.paramwise_cfg.get('shared_lr', 1.0)
        base_wd = self.base_wd if self.base_wd is not None else 0.0
        norm_types = _norm_types()
        norm_params = set()
        for mod in module.modules():
            # by type, and by name for equivalent norms from other packages (mmdet's ViTDet project's LN2d)
            if isinstance(mod, norm_types) or type(mod).__name__ in ('LN2d', 'LayerNorm2d'):
                norm_params.update(id(p) for p in mod.parameters(recurse=False))
        no_decay = [re.compile(p) for p in NO_DECAY_PATTERNS]

        groups: Dict[Tuple[float, bool, float], dict] = OrderedDict()
        for name, param in module.named_parameters(prefix=prefix.rstrip('.')):  # each shared tensor once
            lid = layer_id(name)
            decay = not (id(param) in norm_params or any(p.search(name) for p in no_decay))
            mult = _shared_lr_mult(shared, uses(name))
            key = (lid, decay, mult)
            if key not in groups:
                scale = rate ** (depth + 1 - lid) * mult
                groups[key] = dict(params=[], param_names=[], lr=self.base_lr * scale, lr_scale=scale,
                                   weight_decay=base_wd if decay else 0.0, layer_id=lid,
                                   group_name=f'layer_{lid:g}_{"decay" if decay else "no_decay"}'
                                              + (f'_shared_x{mult:g}' if mult != 1.0 else ''))
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        ordered = [groups[k] for k in sorted(groups)]
        params.extend(ordered)
        print_log(self.summary(ordered, depth, rate, rule), logger='current')

    @staticmethod
    def summary(groups: List[dict], depth: int, rate: float, rule: str = 'base') -> str:
        """A compact table: one line per layer id with its lr scale and parameter counts."""
        per_layer: Dict[float, List[int]] = OrderedDict()
        for g in groups:
            counts = per_layer.setdefault(g['layer_id'], [0, 0, 0])
            n = sum(p.numel() for p in g['params'])
            counts[0 if g['weight_decay'] else 1] += n
            counts[2] = len(g['param_names']) + counts[2]
        lines = [f'ScaleNet layer decay: over {depth} layers (sharing_rule={rule!r}), decay_rate={rate}, '
                 f'{len(groups)} param groups '
                 f'(layer id: lr scale, #tensors, params with / without weight decay)']
        for lid, (wd, nwd, tensors) in per_layer.items():
            what = 'embeddings' if lid == 0 else ('neck, heads, rest' if lid == depth + 1 else 'blocks / positions')
            lines.append(f'  {lid:>6.3g} ({what}): {rate ** (depth + 1 - lid):.3g}, {tensors}, {wd:,} / {nwd:,}')
        return '\n'.join(lines)
