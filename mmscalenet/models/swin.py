"""``ScaleNetSwin``: a Swin Transformer whose stages are grown in depth with shared block weights (ScaleNet).

Pure torch (registered into mmdet's ``MODELS`` by ``mmscalenet/registry.py``). Each stage ``s`` has its own depth
plan (:func:`mmscalenet.expansion.make_depth_plan`): position ``p`` of the stage runs base block ``g_s(p)``.
State-dict layout, timm 1.0's ``SwinTransformer`` names wherever a tensor exists in timm:

* ``patch_embed.proj``, ``patch_embed.norm``: as in timm.
* ``layers.{s}.downsample.{norm,reduction}`` (s > 0): patch merging at the *start* of stage s, timm's channel order.
* ``layers.{s}.blocks.{j}.*`` for j < L_s: the shared weights of base block j of stage s (``norm1``, ``attn.qkv``,
  ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``; ``attn.relative_position_bias_table`` when the tables are
  shared), so timm Swin checkpoints load without renaming.
* ``layers.{s}.positions.{p}.*``: what belongs to position p of stage s only (adapters, LoRA, gates, own norms,
  ``relative_position_bias_table`` when per position, the default).
* ``norm{i}`` for each output stage i (mmdet's names); timm's final ``norm`` is ``norm{last}``.

Shifted windows. W-MSA / SW-MSA alternate by *position* within a stage: even positions use unshifted windows, odd
positions shift by window // 2, whatever block they run. The cyclic default with an even base depth (every Swin
stage: 2, 2, 6, 2) keeps each block at the parity it was trained with. A mapping that runs a block at a position of
the other parity (``'interleave'`` 6 -> 18 puts block 0 at position 1, for example) runs weights trained under one
window partition on the other: the attention is still well defined (the relative-position bias is indexed by the
offset inside a window in both cases and the SW-MSA mask only removes pairs that are not neighbours in the image),
but the inserted position no longer starts as an exact copy of a pretrained computation; its adapters and its own
bias table (per position by default) have to absorb the difference. :meth:`ScaleNetSwin.parity_mismatches` lists
such positions.

Relative-position bias tables: per position by default (``unshared`` contains ``'rel_pos'``), each copied from its
source block on loading. Measured on Swin-T grown to Swin-S depth (window 7): shared tables are 23,322 parameters,
per-position ones 47,658 (+24,336, 0.09 % of the model), and they let a position re-learn the bias for its own
window pattern. At base depth both choices equal timm's Swin (one table per block). ``unshared=()`` shares them.

Windows follow timm's rule at every input size: along a dimension no longer than the (pretraining) window the
window shrinks to the feature map and is not shifted; otherwise the map is shifted (odd positions), padded to whole
windows and masked as in timm. The tables are sized for the windows at ``img_size`` (timm's layout).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from timm.layers import register_notrace_module
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..expansion import (DepthPlan, MappingSpec, check_growth, default_adapter, drop_path_rates, make_depth_plan,
                         stored_plan)
from .adapters import parse_adapter_cfg
from .swin_face import SwinTimmFace
from .swin_position import _NORM_EPS, PatchMerging, SwinPosition, SwinSharedBlock
from .swin_windows import WindowGeometry, relative_position_index, shifted_window_mask, window_geometry  # noqa: F401
from .timm_face import is_fx_tracing
from .shape_ops import pad_to_multiple
from .vit import plain_data

torch.fx.wrap('pad_to_multiple')   # a leaf for torch.fx here too (it branches on the input size)

SWIN_ARCHS: Dict[str, Dict[str, Any]] = {
    'swin-tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'swin-small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'swin-base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}
SWIN_OUT_TYPES = ('featmap', 'pooled')
SWIN_UNSHARED = ('norm', 'rel_pos')
# what ScaleNetSwin.config() holds: the arguments that fix the architecture and the parameter set (out_type /
# out_indices decide which output norms exist); drop_path_rate, with_cp and init_cfg are runtime overrides
SWIN_CONFIG_KEYS = ('arch', 'depths', 'mapping', 'adapter', 'function_preserving', 'unshared', 'img_size',
                    'in_channels', 'out_type', 'out_indices', 'growth')


def resolve_swin_arch(arch: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """``'swin-tiny'`` or ``dict(embed_dims, depths, num_heads, window_size=7, mlp_ratio=4, patch_size=4)``."""
    if isinstance(arch, str):
        key = arch.lower().replace('_', '-')
        key = key if key.startswith('swin-') else f'swin-{key}'
        if key not in SWIN_ARCHS:
            raise ValueError(f'unknown Swin arch {arch!r}: use one of {tuple(SWIN_ARCHS)} or a dict(embed_dims=..., '
                             f'depths=..., num_heads=...)')
        arch = SWIN_ARCHS[key]
    if not isinstance(arch, Mapping):
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
    missing = {'embed_dims', 'depths', 'num_heads'} - set(arch)
    if missing:
        raise ValueError(f'Swin arch dict is missing {sorted(missing)}')
    out = dict(window_size=7, mlp_ratio=4.0, patch_size=4)
    out.update(arch)
    out['depths'], out['num_heads'] = tuple(out['depths']), tuple(out['num_heads'])
    if len(out['depths']) != len(out['num_heads']) or not out['depths']:
        raise ValueError(f'arch depths {out["depths"]} and num_heads {out["num_heads"]} need one entry per stage')
    for key in ('embed_dims', 'window_size', 'patch_size'):
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f'arch.{key} must be a positive integer, got {out[key]!r}')
    for s, (d, h) in enumerate(zip(out['depths'], out['num_heads'])):
        if d < 1 or h < 1 or (out['embed_dims'] << s) % h:
            raise ValueError(f'stage {s}: depth {d} and {h} heads do not fit width {out["embed_dims"] << s}')
    return out


def _stage_mappings(mapping: Any, num_stages: int) -> List[MappingSpec]:
    """One mapping per stage: a name for all stages, or a list of per-stage names / explicit index lists."""
    if isinstance(mapping, str):
        return [mapping] * num_stages
    mapping = list(mapping)
    if len(mapping) != num_stages or not all(isinstance(m, str) or isinstance(m, (list, tuple)) for m in mapping):
        raise ValueError(f'mapping must be "cyclic", "interleave" or a list of {num_stages} per-stage entries (a '
                         f'name or a list of base-block indices), got {mapping!r}')
    return mapping


@register_notrace_module   # a leaf for timm's torch.fx tracer: the window geometry branches on the map size
class SwinStage(nn.Module):
    """Optional patch merging, then the positions of one stage running its shared blocks.

    For torch.fx (timm's tracer, ``timm.layers.register_notrace_module``) the stage is a leaf; for TorchScript it
    scripts as its mirror (``models/scripting.py``), which computes the window geometry in the graph.
    """

    def __init__(self, dim: int, in_dim: int, num_heads: int, mlp_ratio: float, plan: DepthPlan,
                 table_window: Tuple[int, int], adapter: Optional[Dict[str, Any]], own_norms: bool,
                 own_tables: bool, function_preserving: bool, drop_path: Sequence[float], downsample: bool):
        super().__init__()
        self.plan, self.table_window = plan, table_window
        self.downsample = PatchMerging(in_dim, dim) if downsample else nn.Identity()
        rows = (2 * table_window[0] - 1) * (2 * table_window[1] - 1)
        self.blocks = nn.ModuleList(SwinSharedBlock(dim, num_heads, mlp_ratio, not own_norms,
                                                    0 if own_tables else rows) for _ in range(plan.base_depth))
        self.positions = nn.ModuleList(
            SwinPosition(p, j, dim, num_heads, mlp_ratio, adapter, own_norms,
                         gated=function_preserving and plan.inserted[p], drop_path=drop_path[p],
                         shifted=p % 2 == 1, table_rows=rows if own_tables else 0)
            for p, j in enumerate(plan.sources))
        self._geometry: Dict[Any, WindowGeometry] = {}
        self.with_cp = False

    def geometry(self, hw: Tuple[int, int], shifted: bool, x: torch.Tensor) -> WindowGeometry:
        key = (hw, shifted, x.device, x.dtype)
        geo = self._geometry.get(key)
        if geo is None:
            if len(self._geometry) > 32:  # many input sizes (multi-scale training): keep the cache small
                self._geometry.clear()
            geo = self._geometry[key] = window_geometry(hw, self.table_window, shifted, x.device, x.dtype)
        return geo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        hw = (x.shape[1], x.shape[2])
        for p, pos in enumerate(self.positions):
            block = self.blocks[self.plan.sources[p]]
            geo = self.geometry(hw, pos.shifted, x)
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = checkpoint(pos, x, block, geo, use_reentrant=False)
            else:
                x = pos(x, block, geo)
        return x

    def __prepare_scriptable__(self) -> nn.Module:
        from .scripting import ScriptSwinStage
        return ScriptSwinStage(self)


class ScaleNetSwin(SwinTimmFace, nn.Module):
    """Swin Transformer grown stage by stage from ``arch``'s depths to ``depths`` with shared block weights.

    Args:
        arch: the pretrained (base) model: 'swin-tiny' | 'swin-small' | 'swin-base' | dict(embed_dims, depths,
            num_heads, window_size=7, mlp_ratio=4, patch_size=4).
        depths: grown depth of every stage, each >= the base's (default: the base depths). Swin-T -> Swin-S depth:
            ``arch='swin-tiny', depths=(2, 2, 18, 2)``.
        mapping: 'cyclic' (default), 'interleave', or one entry per stage (a name or an explicit index list).
        adapter, function_preserving, growth: as for ``ScaleNetViT`` (per position; adapter 'auto': ParallelAdapter
            bottleneck 8 for growth='shared', none for the copies 'copy' / 'copy_zero', the progressive foil that
            stores one block per position of every stage).
        unshared: subset of ('norm', 'rel_pos'); default ('rel_pos',): per-position bias tables, shared norms.
        img_size: pretraining input size; fixes the window of stages whose map is smaller than ``window_size``
            (timm's layout of the bias tables). Any input size runs.
        drop_path_rate: stochastic depth, linear over the total grown depth.
        out_type: 'featmap' -> tuple of (B, C_i, H_i, W_i) maps at ``out_indices`` (stages), each through its own
            LayerNorm ``norm{i}`` (mmdet's Swin); 'pooled' -> tuple with the final-normed, average-pooled (B, C)
            features (timm's ``forward_head(..., pre_logits=True)``), for classification.
        out_indices: stages whose outputs are returned (default: all four for 'featmap').
        with_cp: activation checkpointing per position (non-reentrant).
        init_cfg: dict(type='Pretrained', checkpoint=PATH | 'timm:NAME' | URL): timm, Microsoft or mmdet /
            mmpretrain Swin checkpoints, or this project's, expanded to the plans.
    """

    def __init__(self, arch: Union[str, Mapping[str, Any]] = 'swin-tiny', depths: Optional[Sequence[int]] = None,
                 mapping: Any = 'cyclic', adapter: Union[str, Mapping[str, Any], None] = 'auto',
                 function_preserving: bool = False, unshared: Sequence[str] = ('rel_pos',),
                 img_size: Union[int, Tuple[int, int]] = 224, in_channels: int = 3, drop_path_rate: float = 0.0,
                 out_type: str = 'featmap', out_indices: Optional[Sequence[int]] = None, with_cp: bool = False,
                 init_cfg: Optional[Mapping[str, Any]] = None, growth: str = 'shared'):
        super().__init__()
        self.growth = check_growth(growth)
        if function_preserving and growth != 'shared':
            raise ValueError(f'function_preserving gates belong to growth="shared"; the function-preserving copies '
                             f'are growth="copy_zero" (got growth={growth!r})')
        a = resolve_swin_arch(arch)
        self.arch = a
        S = len(a['depths'])
        depths = tuple(a['depths']) if depths is None else tuple(depths)
        if len(depths) != S:
            raise ValueError(f'depths={depths} needs one depth per stage ({S} stages, base {a["depths"]})')
        maps = _stage_mappings(mapping, S)
        plans = []
        for s in range(S):
            try:
                plans.append(make_depth_plan(a['depths'][s], depths[s], maps[s]))
            except (ValueError, TypeError) as err:
                raise type(err)(f'stage {s}: {err}') from None
        self.growth_plans: Tuple[DepthPlan, ...] = tuple(plans)
        self.plans: Tuple[DepthPlan, ...] = tuple(stored_plan(plan, growth) for plan in plans)
        self.adapter_cfg = parse_adapter_cfg(default_adapter(adapter, growth))
        self.unshared = (unshared,) if isinstance(unshared, str) else tuple(unshared)
        bad = [u for u in self.unshared if u not in SWIN_UNSHARED]
        if bad:
            raise ValueError(f'unshared={bad} is not supported: choose from {SWIN_UNSHARED}')
        if out_type not in SWIN_OUT_TYPES:
            raise ValueError(f'out_type must be one of {SWIN_OUT_TYPES}, got {out_type!r}')
        if isinstance(img_size, int) and not isinstance(img_size, bool):
            img_size = (img_size, img_size)
        img_size = tuple(img_size)
        if len(img_size) != 2 or any(not isinstance(v, int) or v < a['patch_size'] for v in img_size):
            raise ValueError(f'img_size must be an int or (H, W), each >= patch_size={a["patch_size"]}; got '
                             f'{img_size}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        if out_indices is None:
            out_indices = tuple(range(S)) if out_type == 'featmap' else (S - 1,)
        out_indices = tuple(int(i) + S if int(i) < 0 else int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < S for i in out_indices):
            raise ValueError(f'out_indices must be stages in [0, {S}), got {out_indices}')
        if out_type == 'pooled' and out_indices != (S - 1,):
            raise ValueError(f'out_type="pooled" returns the last stage only: out_indices must be ({S - 1},)')
        self.out_type, self.out_indices = out_type, out_indices
        self.img_size, self.with_cp = img_size, with_cp
        self.function_preserving, self.drop_path_rate = function_preserving, drop_path_rate
        self.patch_size, self.embed_dims = a['patch_size'], a['embed_dims']
        self.num_heads = a['num_heads']
        # widths per stage; num_features keeps them for this backbone's users (timm's classifier: the last one)
        self.stage_dims = self.num_features = tuple(a['embed_dims'] << s for s in range(S))

        C = a['embed_dims']
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, C, a['patch_size'], a['patch_size'])
        self.patch_embed.norm = nn.LayerNorm(C, eps=_NORM_EPS)
        rates = drop_path_rates(sum(depths), drop_path_rate)
        grid = [v // a['patch_size'] for v in img_size]
        stages, start = [], 0
        for s in range(S):
            if s > 0:  # timm's input_resolution (floor); the maps themselves are padded to even sizes
                grid = [v // 2 for v in grid]
            table_window = tuple(min(v, a['window_size']) for v in grid)
            stages.append(SwinStage(
                self.num_features[s], self.num_features[max(s - 1, 0)], a['num_heads'][s], a['mlp_ratio'],
                self.plans[s], table_window, self.adapter_cfg, 'norm' in self.unshared, 'rel_pos' in self.unshared,
                function_preserving, rates[start:start + depths[s]], downsample=s > 0))
            stages[-1].with_cp = with_cp
            start += depths[s]
        self.layers = nn.ModuleList(stages)
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i], eps=_NORM_EPS))
        self._init_head()   # timm's interface (models/swin_face.py): no classifier, no parameters
        self.init_cfg = dict(init_cfg) if init_cfg is not None else None
        self.reset_parameters()

    # ---- initialisation and loading -------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """timm's Swin initialisation: trunc-normal(0.02) linears and bias tables, unit norms; adapters keep theirs."""
        for name, m in self.named_modules():
            if '.positions.' in name and ('adapter' in name or '.lora' in name):
                continue
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith('relative_position_bias_table'):
                nn.init.trunc_normal_(p, std=0.02)

    def init_weights(self) -> None:
        """mmengine hook: load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` if given."""
        if not self.init_cfg:
            return
        if self.init_cfg.get('type') != 'Pretrained' or not self.init_cfg.get('checkpoint'):
            raise ValueError(f'ScaleNetSwin supports init_cfg=dict(type="Pretrained", checkpoint=...), got '
                             f'{self.init_cfg!r}')
        self.load_pretrained(self.init_cfg['checkpoint'], bool(self.init_cfg.get('allow_other_plan', False)))

    #: ``load_pretrained``'s implementation, as for ``ScaleNetViT`` (set by ``mmscalenet/__init__.py``)
    pretrained_loader: Any = None
    #: the backbone family recorded in checkpoint metadata
    family = 'swin'

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, torch.Tensor]], allow_other_plan: bool = False,
                        **kwargs: Any) -> Dict[str, Any]:
        """Load a timm / Microsoft / mmdet / mmpretrain / ScaleNet Swin checkpoint; returns the load report.

        A ScaleNet-Swin checkpoint saved with other stage plans is refused unless ``allow_other_plan`` (then its
        per-position parameters follow their base blocks, stage by stage); ``init_cfg=dict(...,
        allow_other_plan=True)`` sets it. ``kwargs``: ``allow_nonfinite``, ``verify_checksum``, ``name``.
        """
        return type(self).pretrained_loader(self, checkpoint, allow_other_plan, **kwargs)

    def growth_stacks(self) -> List[Tuple[str, DepthPlan, nn.Module]]:
        """The grown stacks as (key prefix, depth plan, module with ``blocks`` / ``positions``): one per stage."""
        return [(f'layers.{s}.', plan, stage) for s, (plan, stage) in enumerate(zip(self.plans, self.layers))]

    # ---- the shared config() / from_config() interface ---------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        """Plain data (JSON types) rebuilding this architecture and parameter set with :meth:`from_config`.

        The arch resolved to its dict, the grown depths, each stage's plan as its explicit source list, adapters,
        gates, unshared tensors, pretraining size, input channels, and ``out_type`` / ``out_indices`` (they decide
        which output norms exist). Runtime knobs (``drop_path_rate``, ``with_cp``, ``init_cfg``) are overrides.
        """
        return plain_data({
            'arch': dict(self.arch),
            'depths': [p.depth for p in self.plans],
            'mapping': [list(p.sources) for p in self.growth_plans],
            'adapter': dict(self.adapter_cfg) if self.adapter_cfg else None,
            'function_preserving': bool(self.function_preserving),
            'unshared': list(self.unshared),
            'img_size': list(self.img_size),
            'in_channels': int(self.patch_embed.proj.in_channels),
            'out_type': self.out_type,
            'out_indices': list(self.out_indices),
            'growth': self.growth,
        })

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **overrides: Any) -> 'ScaleNetSwin':
        """Build the model :meth:`config` describes; ``overrides`` change any constructor argument.

        Overriding ``depths`` without ``mapping`` grows every stage cyclically (the recorded explicit plans no longer
        fit); an explicit per-stage ``mapping`` alone sets the depths of its list entries. Overriding ``out_type``
        without ``out_indices`` takes that type's default outputs.
        """
        if not isinstance(cfg, Mapping):
            raise TypeError(f'ScaleNetSwin.from_config needs a dict (ScaleNetSwin.config()), got {type(cfg).__name__}')
        unknown = sorted(set(cfg) - set(SWIN_CONFIG_KEYS))
        if unknown:
            raise ValueError(f'ScaleNetSwin config has unknown keys {unknown}; it takes {list(SWIN_CONFIG_KEYS)}')
        kw = dict(cfg)
        if 'depths' in overrides and 'mapping' not in overrides:
            kw['mapping'] = 'cyclic'
        elif 'mapping' in overrides and 'depths' not in overrides and not isinstance(overrides['mapping'], str):
            kw['depths'] = [d if isinstance(m, str) else len(m) for m, d in zip(overrides['mapping'], kw['depths'])]
        if 'out_type' in overrides and 'out_indices' not in overrides:
            kw.pop('out_indices', None)
        kw.update(overrides)
        return cls(**kw)

    def set_fused(self, fused: bool) -> 'ScaleNetSwin':
        """Fused adapter path (default) or the plain reference implementation."""
        for stage in self.layers:
            for pos in stage.positions:
                pos.set_fused(fused)
        return self

    def parity_mismatches(self) -> List[Tuple[int, int, int]]:
        """(stage, position, source block) where a block runs at the other W-MSA / SW-MSA parity than trained."""
        return [(s, p, j) for s, plan in enumerate(self.growth_plans) for p, j in enumerate(plan.sources)
                if p % 2 != j % 2]

    # ---- forward ---------------------------------------------------------------------------------------------
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """Input check (not in traced graphs), padding to whole patches, patch embedding: (B, h, w, C)."""
        if not is_fx_tracing() and (x.dim() != 4 or x.shape[1] != self.patch_embed.proj.in_channels):
            raise ValueError(f'ScaleNetSwin expects images (B, {self.patch_embed.proj.in_channels}, H, W), got '
                             f'shape {tuple(x.shape)}')
        x = pad_to_multiple(x, self.patch_size)
        return self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self._stem(x)
        outs = []
        for s, stage in enumerate(self.layers):
            x = stage(x)
            if s in self.out_indices:
                y = getattr(self, f'norm{s}')(x)
                outs.append(y.mean((1, 2)) if self.out_type == 'pooled' else y.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script(model)`` scripts the TorchScript mirror (``models/scripting.py``): same tensors."""
        from .scripting import script_mirror
        return script_mirror(self)
