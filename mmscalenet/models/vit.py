"""``ScaleNetViT``: a ViT grown in depth with shared layer weights and per-position adjustment parameters.

Torch and timm only (registered into mmdet's ``MODELS`` by ``mmscalenet/registry.py``), so it also runs without
OpenMMLab (benchmarks, export). State-dict layout:

* ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm``: as in timm.
* ``blocks.{j}.*`` for j < L: the shared weights of base layer j, with timm's names (``norm1``, ``attn.qkv``,
  ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so timm / DeiT / MAE checkpoints load without renaming.
* ``positions.{p}.*`` for p < D: what belongs to position p only (adapters, LoRA, gates, own norms, rel-pos tables).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from timm.layers import drop_path as stochastic_depth
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias, window_partition, window_unpartition
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..expansion import DepthPlan, MappingSpec, _unshared_names, drop_path_rates, make_depth_plan, spread_indices
from .adapters import FusedPath, ReferencePath, build_adapters, parse_adapter_cfg

ARCHS: Dict[str, Dict[str, Any]] = {
    'deit-tiny': dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4.0),
    'deit-small': dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4.0),
    'deit-base': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.0),
}
OUT_TYPES = ('cls_token', 'featmap')
# What ScaleNetViT.config() records: the constructor arguments that fix the architecture and the parameter set. The
# others (drop_path_rate, out_indices, with_cp, init_cfg) are run-time choices, given to from_config as overrides.
CONFIG_KEYS = ('arch', 'depth', 'mapping', 'adapter', 'function_preserving', 'unshared', 'img_size', 'patch_size',
               'in_channels', 'out_type', 'window_size', 'global_indices', 'use_rel_pos')


def resolve_arch(arch: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """``'deit-small'`` or ``dict(embed_dims, num_layers, num_heads, mlp_ratio)`` -> validated dict."""
    if isinstance(arch, str):
        key = arch.lower().replace('_', '-')
        key = key if key.startswith('deit-') else f'deit-{key}'
        if key not in ARCHS:
            raise ValueError(f'unknown arch {arch!r}: use one of {tuple(ARCHS)} or a dict(embed_dims=..., '
                             f'num_layers=..., num_heads=..., mlp_ratio=...)')
        return dict(ARCHS[key])
    if not isinstance(arch, Mapping):
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
    missing = {'embed_dims', 'num_layers', 'num_heads'} - set(arch)
    if missing:
        raise ValueError(f'arch dict is missing {sorted(missing)}')
    unknown = set(arch) - {'embed_dims', 'num_layers', 'num_heads', 'mlp_ratio'}
    if unknown:   # e.g. a typo'd --cfg-options model.backbone.arch.embed_dim=... merged beside embed_dims
        raise ValueError(f'arch dict has unknown keys {sorted(unknown)}: it takes embed_dims, num_layers, '
                         f'num_heads, mlp_ratio')
    out = dict(mlp_ratio=4.0)
    out.update(arch)
    for key in ('embed_dims', 'num_layers', 'num_heads'):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f'arch.{key} must be a positive integer, got {v!r}')
    if out['embed_dims'] % out['num_heads']:
        raise ValueError(f'arch.embed_dims={out["embed_dims"]} is not divisible by num_heads={out["num_heads"]}')
    r = out['mlp_ratio']
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r) or \
            int(out['embed_dims'] * r) < 1:
        raise ValueError(f'arch.mlp_ratio must be a finite number > 0 giving an MLP of at least one unit '
                         f'(embed_dims * mlp_ratio >= 1), got {r!r}')
    return out


def plain_data(value: Any) -> Any:
    """Tuples to lists, recursively, and mapping keys to str: what JSON (and ``weights_only`` loading) keeps."""
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    return value


def _check_indices(values: Any, name: str) -> None:
    """Position indices must be integers (a float such as 1.5 would be truncated silently)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, '__iter__') or any(
            isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in values):
        raise ValueError(f'{name} must be a sequence of integer positions, got {values!r}')


class _Attn(nn.Module):
    """Container for the shared attention weights (timm names ``qkv``, ``proj``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)


class _Mlp(nn.Module):
    """Container for the shared MLP weights (timm names ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class SharedBlock(nn.Module):
    """The weights of one pretrained layer, stored once and run by every position that maps to it."""

    def __init__(self, dim: int, mlp_ratio: float, shared_norms: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6) if shared_norms else None
        self.attn = _Attn(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6) if shared_norms else None
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))


def decomposed_rel_pos_bias(q: torch.Tensor, grid: Tuple[int, int], rel_h: torch.Tensor,
                            rel_w: torch.Tensor) -> torch.Tensor:
    """MViTv2 / ViTDet decomposed relative-position bias (timm's) for queries ``q`` (B, heads, H*W, hd).

    Returns an additive attention bias (B, heads, H*W, H*W); the tables are resized when ``grid`` differs from the
    size they were made for.
    """
    B, nh, N, hd = q.shape
    bias = get_decomposed_rel_pos_bias(q.reshape(B * nh, N, hd), rel_h.to(q.dtype), rel_w.to(q.dtype), grid, grid)
    return bias.view(B, nh, N, N)


class Position(nn.Module):
    """One depth position: runs a :class:`SharedBlock` with its own adapters, gates, norms and attention pattern.

    The block is passed at call time (not registered here), so the shared tensors appear once in the module tree.
    """

    def __init__(self, index: int, source: int, dim: int, num_heads: int, mlp_ratio: float,
                 adapter: Optional[Dict[str, Any]], own_norms: bool, gated: bool, drop_path: float,
                 window_size: int, rel_pos_size: int, norm_eps: float = 1e-6):
        super().__init__()
        self.index, self.source = index, source
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.drop_path = drop_path
        self.window_size = window_size
        hidden = int(dim * mlp_ratio)
        if own_norms:  # norm_eps: 1e-6 for timm's ViT, 1e-5 for its Swin (the Swin position subclasses this)
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        else:
            self.norm1 = self.norm2 = None
        # one interface for every kind (a no-op where there is none); LoRA deltas keep their keys lora.{target}
        self.adapter_attn, self.adapter_mlp, self.lora = build_adapters(adapter, dim, hidden)
        self.path = FusedPath   # set_fused(False): ReferencePath, the readable definition
        if gated:  # function-preserving growth: an inserted position starts as the identity
            # shape (1,), not a 0-dim scalar: FSDP2 cannot shard 0-dim parameters
            self.gate_attn = nn.Parameter(torch.zeros(1))
            self.gate_mlp = nn.Parameter(torch.zeros(1))
        else:
            self.gate_attn = self.gate_mlp = None
        if rel_pos_size > 0:
            size = window_size if window_size > 0 else rel_pos_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def extra_repr(self) -> str:
        attn = f'window={self.window_size}' if self.window_size else 'global'
        return f'index={self.index}, source={self.source}, {attn}, drop_path={self.drop_path:.3f}'

    # ---- adapters ------------------------------------------------------------------------------------------
    @property
    def fused(self) -> bool:
        return self.path is FusedPath

    def set_fused(self, fused: bool) -> None:
        """Fused kernels (fast, default) or the plain reference implementation of the adapters."""
        self.path = FusedPath if fused else ReferencePath

    @torch.no_grad()
    def export_state(self, block: SharedBlock) -> Dict[str, torch.Tensor]:
        """This position as the state dict of a plain timm ``Block``: its norms, the shared weights with its
        adapters merged (``ValueError`` when they cannot be) and its residual gates folded into ``attn.proj`` /
        ``mlp.fc2``. Untied export writes it as block ``index``."""
        out: Dict[str, torch.Tensor] = {}
        for name, own, shared in (('norm1', self.norm1, block.norm1), ('norm2', self.norm2, block.norm2)):
            norm = own if own is not None else shared
            out[f'{name}.weight'], out[f'{name}.bias'] = norm.weight.clone(), norm.bias.clone()
        for site, adapter, gate, first, second in (
                (('attn.qkv', 'attn.proj'), self.adapter_attn, self.gate_attn, block.attn.qkv, block.attn.proj),
                (('mlp.fc1', 'mlp.fc2'), self.adapter_mlp, self.gate_mlp, block.mlp.fc1, block.mlp.fc2)):
            weights = adapter.merged_weights(first.weight.float(), second.weight.float())
            for name, linear, weight in zip(site, (first, second), weights):
                bias = linear.bias.float()
                if linear is second and gate is not None:
                    weight, bias = weight * gate.float(), bias * gate.float()
                out[f'{name}.weight'] = weight.to(linear.weight.dtype).contiguous()
                out[f'{name}.bias'] = bias.to(linear.bias.dtype).contiguous()
        return out

    # ---- helpers --------------------------------------------------------------------------------------------
    def _residual(self, x: torch.Tensor, branch: torch.Tensor, gate: Optional[torch.Tensor]) -> torch.Tensor:
        if gate is not None:
            branch = branch * gate
        return x + stochastic_depth(branch, self.drop_path, self.training)

    # ---- sub-layers -----------------------------------------------------------------------------------------
    def _attention(self, h: torch.Tensor, block: SharedBlock, grid: Optional[Tuple[int, int]]) -> torch.Tensor:
        """Multi-head self-attention over the tokens of ``h`` (B, N, C); ``grid`` = (H, W) for rel-pos."""
        B, N, C = h.shape
        qkv, carry = self.path.project_in(self.adapter_attn, h, block.attn.qkv)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if self.rel_pos_h is not None and grid is not None:
            bias = decomposed_rel_pos_bias(q, grid, self.rel_pos_h, self.rel_pos_w)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        o = o.transpose(1, 2).reshape(B, N, C)
        return self.path.project_out(self.adapter_attn, o, block.attn.proj, carry)

    def _mlp(self, h: torch.Tensor, block: SharedBlock) -> torch.Tensor:
        z, carry = self.path.project_in(self.adapter_mlp, h, block.mlp.fc1)
        # rebind, don't nest: holding fc1's output through fc2 (as F.gelu(z) in the call would) keeps two
        # hidden-size buffers alive at once, and on CPU glibc then hands the pair back to the OS after every
        # block, so the next block page-faults them in again (measured: gelu 3x slower in inference)
        z = F.gelu(z)
        return self.path.project_out(self.adapter_mlp, z, block.mlp.fc2, carry)

    def forward(self, x: torch.Tensor, block: SharedBlock) -> torch.Tensor:
        """``x``: (B, N, C) tokens (class-token mode) or (B, H, W, C) feature map (dense mode)."""
        norm1 = self.norm1 if self.norm1 is not None else block.norm1
        norm2 = self.norm2 if self.norm2 is not None else block.norm2
        h = norm1(x)
        if x.dim() == 4:
            B, H, W, C = x.shape
            if self.window_size > 0:
                ws = self.window_size
                windows, padded = window_partition(h, ws)
                a = self._attention(windows.reshape(-1, ws * ws, C), block, (ws, ws))
                a = window_unpartition(a.view(-1, ws, ws, C), ws, (H, W), padded)
            else:
                a = self._attention(h.reshape(B, H * W, C), block, (H, W)).view(B, H, W, C)
        else:
            a = self._attention(h, block, None)
        x = self._residual(x, a, self.gate_attn)
        x = self._residual(x, self._mlp(norm2(x), block), self.gate_mlp)
        return x


class ScaleNetViT(nn.Module):
    """ViT grown from ``arch``'s depth L to ``depth`` D with shared layer weights (ScaleNet).

    Args:
        arch: 'deit-tiny' | 'deit-small' | 'deit-base' | dict(embed_dims, num_layers, num_heads, mlp_ratio).
        depth: expanded depth D >= L (default L).
        mapping: 'cyclic' (default), 'interleave' or an explicit list of D base-layer indices.
        adapter: dict(type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')) (default),
            dict(type='LoRA', rank=8, alpha=16, targets=('qkv', 'proj', 'fc1', 'fc2')) or None.
        function_preserving: inserted positions get residual gates starting at 0, so at step 0 the grown model
            computes exactly the pretrained model.
        unshared: ('norm',) gives each position its own LayerNorms, initialised from its source layer.
        img_size, patch_size: pretraining grid (the position embedding's size); other input sizes work.
        drop_path_rate: stochastic depth, linear over the D positions.
        out_type: 'cls_token' -> tuple with the final-normed class token (B, C); 'featmap' -> tuple of
            (B, C, ceil(H/16), ceil(W/16)) maps (ViTDet style, no class token) at ``out_indices``.
        out_indices: positions whose outputs are returned in 'featmap' mode (default: the last).
        window_size: > 0 runs window attention in 'featmap' mode, except at ``global_indices``.
        global_indices: positions with global attention (default: 4 spread evenly over D, the last included).
        use_rel_pos: decomposed relative-position tables per position ('featmap' mode; zero-initialised).
        with_cp: activation checkpointing per position (non-reentrant).
        init_cfg: dict(type='Pretrained', checkpoint=PATH | 'timm:NAME' | URL) loads timm / DeiT / MAE /
            mmpretrain / ScaleNet checkpoints, expanding them to the plan.
    """

    def __init__(self, arch: Union[str, Mapping[str, Any]] = 'deit-small', depth: Optional[int] = None,
                 mapping: MappingSpec = 'cyclic', adapter: Optional[Mapping[str, Any]] = dict(
                     type='ParallelAdapter'), function_preserving: bool = False, unshared: Sequence[str] = (),
                 img_size: Union[int, Tuple[int, int]] = 224, patch_size: int = 16, in_channels: int = 3,
                 drop_path_rate: float = 0.0, out_type: str = 'cls_token',
                 out_indices: Optional[Sequence[int]] = None, window_size: int = 0,
                 global_indices: Optional[Sequence[int]] = None, use_rel_pos: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Mapping[str, Any]] = None):
        super().__init__()
        a = resolve_arch(arch)
        self.arch = a
        self.embed_dims, self.num_heads = a['embed_dims'], a['num_heads']
        self.plan: DepthPlan = make_depth_plan(a['num_layers'], depth, mapping)
        D = self.plan.depth
        self.adapter_cfg = parse_adapter_cfg(adapter)
        self.unshared = tuple(unshared) if not isinstance(unshared, str) else (unshared,)
        own_norms = bool(_unshared_names(self.unshared))
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        for name, v in (('patch_size', patch_size), ('in_channels', in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f'{name} must be a positive integer, got {v!r}')
        if isinstance(img_size, int) and not isinstance(img_size, bool):
            img_size = (img_size, img_size)
        if not isinstance(img_size, (tuple, list)) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in img_size):
            raise TypeError(f'img_size must be an int or a pair of ints, got {img_size!r}')
        img_size = tuple(img_size)
        if len(img_size) != 2 or any(s < patch_size for s in img_size):
            raise ValueError(f'img_size must be one int or (H, W), each >= patch_size={patch_size}; got {img_size}')
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 0:
            raise ValueError(f'window_size must be an integer >= 0, got {window_size!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        if out_type == 'cls_token' and (window_size or use_rel_pos):
            raise ValueError('window attention and relative positions need out_type="featmap" (the class token '
                             'has no place in a window)')
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.window_size, self.use_rel_pos, self.with_cp = window_size, use_rel_pos, with_cp
        self.function_preserving = function_preserving
        self.drop_path_rate = drop_path_rate

        if out_indices is None:
            out_indices = (D - 1,)
        _check_indices(out_indices, 'out_indices')
        out_indices = tuple(int(i) + D if int(i) < 0 else int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < D for i in out_indices):
            raise ValueError(f'out_indices must be positions in [0, {D}), got {out_indices}')
        self.out_indices = out_indices
        if global_indices is None:
            global_indices = spread_indices(D, 4) if window_size else tuple(range(D))
        _check_indices(global_indices, 'global_indices')
        global_indices = tuple(int(i) + D if int(i) < 0 else int(i) for i in global_indices)
        if any(not 0 <= i < D for i in global_indices):
            raise ValueError(f'global_indices must be positions in [0, {D}), got {global_indices}')
        self.global_indices = global_indices

        C = self.embed_dims
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, C, patch_size, patch_size)
        # featmap mode (ViTDet) has no class token: an unused parameter would break DDP without
        # find_unused_parameters. The position embedding keeps timm's class slot so checkpoints load as they are.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if out_type == 'cls_token' else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], C))
        self.blocks = nn.ModuleList(SharedBlock(C, a['mlp_ratio'], not own_norms) for _ in range(a['num_layers']))
        rates = drop_path_rates(D, drop_path_rate)
        rel_size = max(self.grid) if use_rel_pos else 0
        self.positions = nn.ModuleList(
            Position(p, j, C, self.num_heads, a['mlp_ratio'], self.adapter_cfg, own_norms,
                     gated=function_preserving and self.plan.inserted[p], drop_path=rates[p],
                     window_size=0 if p in global_indices else window_size, rel_pos_size=rel_size)
            for p, j in enumerate(self.plan.sources))
        self.norm = nn.LayerNorm(C, eps=1e-6) if out_type == 'cls_token' else None
        self.init_cfg = dict(init_cfg) if init_cfg is not None else None
        self.num_classes, self.global_pool, self.head = 0, 'token', nn.Identity()  # timm API: reset_classifier
        self.reset_parameters()

    # ---- the architecture as plain data --------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        """The constructor arguments that rebuild this architecture and parameter set, as JSON-ready plain data
        (``CONFIG_KEYS``; the depth plan as the explicit per-position list of base layers)."""
        return plain_data(dict(
            arch=dict(self.arch), depth=self.plan.depth, mapping=list(self.plan.sources), adapter=self.adapter_cfg,
            function_preserving=bool(self.function_preserving), unshared=list(self.unshared),
            img_size=list(self.img_size), patch_size=self.patch_size,
            in_channels=int(self.patch_embed.proj.in_channels), out_type=self.out_type,
            window_size=self.window_size, global_indices=list(self.global_indices), use_rel_pos=bool(self.use_rel_pos)))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **overrides: Any) -> 'ScaleNetViT':
        """The model :meth:`config` describes; ``overrides``: any constructor argument (run-time ones such as
        ``drop_path_rate``, or another ``depth`` / ``mapping``, which recomputes the plan-dependent
        ``global_indices``). Keys ``cfg`` leaves out take the constructor's defaults."""
        if not isinstance(cfg, Mapping):
            raise TypeError(f'ScaleNetViT.from_config needs a dict, got {type(cfg).__name__}')
        unknown = sorted(set(cfg) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f'ScaleNetViT config has unknown keys {unknown}: it holds {list(CONFIG_KEYS)} (run-time '
                             f'options such as drop_path_rate are overrides)')
        kw = dict(cfg)
        if 'depth' in overrides or 'mapping' in overrides:   # another plan: what the old one fixed is recomputed
            kw.pop('global_indices', None)
            kw['mapping'] = 'cyclic'
            if 'depth' in overrides or not isinstance(overrides['mapping'], str):
                kw.pop('depth', None)
        kw.update(overrides)
        return cls(**kw)

    # ---- initialisation and loading -----------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """timm's ViT initialisation for the shared weights; adapters keep their own (zero up-projection)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """mmengine hook: load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` if given."""
        if not self.init_cfg:
            return
        kind = self.init_cfg.get('type')
        if kind != 'Pretrained':
            raise ValueError(f'ScaleNetViT supports init_cfg=dict(type="Pretrained", checkpoint=...), got {kind!r}')
        if not self.init_cfg.get('checkpoint'):
            raise ValueError('init_cfg=dict(type="Pretrained") needs a checkpoint path, URL or "timm:NAME"')
        self.load_pretrained(self.init_cfg['checkpoint'], bool(self.init_cfg.get('allow_other_plan', False)))

    #: ``load_pretrained``'s implementation: ``mmscalenet.checkpoint.load_backbone``, handed to both backbone families
    #: by the package's composition root (``mmscalenet/__init__.py``), so this file never imports the checkpoint code
    pretrained_loader: Any = None
    #: the backbone family recorded in checkpoint metadata (``mmscalenet.checkpoint.scalenet_meta``)
    family = 'vit'

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, torch.Tensor]], allow_other_plan: bool = False,
                        **kwargs: Any) -> Dict[str, Any]:
        """Load and expand a timm / DeiT / MAE / mmpretrain / ScaleNet checkpoint; returns the load report.

        A ScaleNet checkpoint saved with another depth plan is refused unless ``allow_other_plan`` (then its
        per-position parameters follow their base layers); ``init_cfg=dict(..., allow_other_plan=True)`` sets it.
        ``kwargs``: ``allow_nonfinite``, ``verify_checksum``, ``name`` of ``mmscalenet.checkpoint.load_backbone``.
        """
        return type(self).pretrained_loader(self, checkpoint, allow_other_plan, **kwargs)

    def growth_stacks(self) -> List[Tuple[str, DepthPlan, nn.Module]]:
        """The grown stacks as (key prefix, depth plan, module with ``blocks`` / ``positions``): the trunk is one."""
        return [('', self.plan, self)]

    def set_fused(self, fused: bool) -> 'ScaleNetViT':
        """Switch between the fused (fast, default) and the plain reference implementation of the adapters."""
        for pos in self.positions:
            pos.set_fused(fused)
        return self

    def untied_block_state(self, p: int) -> Dict[str, torch.Tensor]:
        """Position ``p`` as a plain timm block's state dict (see :meth:`Position.export_state`)."""
        return self.positions[p].export_state(self.blocks[self.plan.sources[p]])

    # ---- forward ---------------------------------------------------------------------------------------------
    def _pos_embed_for(self, grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class-slot and spatial position embeddings, the latter resized (bicubic) to ``grid`` if needed."""
        pos_embed = self.pos_embed
        if tuple(grid) != self.grid:
            pos_embed = resample_abs_pos_embed(pos_embed, list(grid), list(self.grid), num_prefix_tokens=1,
                                               antialias=False)
        return pos_embed[:, :1], pos_embed[:, 1:]

    def _run(self, p: int, x: torch.Tensor) -> torch.Tensor:
        pos, block = self.positions[p], self.blocks[self.plan.sources[p]]
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(pos, x, block, use_reentrant=False)
        return pos(x, block)

    def _encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Patch embedding and every position: (last hidden state, the 'featmap' outputs at ``out_indices``)."""
        if x.dim() != 4:
            raise ValueError(f'ScaleNetViT expects images (B, C, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f'ScaleNetViT expects {self.patch_embed.proj.in_channels} input channels, got '
                             f'{x.shape[1]} (shape {tuple(x.shape)})')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f'ScaleNetViT got images of size 0 (shape {tuple(x.shape)}): H and W must be >= 1')
        ps = self.patch_size
        pad_h, pad_w = (-x.shape[2]) % ps, (-x.shape[3]) % ps
        if pad_h or pad_w:  # any input size: pad bottom/right to whole patches
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed.proj(x)
        B, C, H, W = x.shape
        cls_pos, spatial_pos = self._pos_embed_for((H, W))
        outs: List[torch.Tensor] = []
        if self.out_type == 'cls_token':
            x = x.flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(B, -1, -1) + cls_pos, x + spatial_pos], dim=1)
            for p in range(self.plan.depth):
                x = self._run(p, x)
            return x, outs
        x = x.permute(0, 2, 3, 1) + spatial_pos.view(1, H, W, C)
        for p in range(self.plan.depth):
            x = self._run(p, x)
            if p in self.out_indices:
                outs.append(x.permute(0, 3, 1, 2).contiguous())
        return x, outs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """OpenMMLab backbone output: ``(class token,)`` or the feature maps at ``out_indices``."""
        x, outs = self._encode(x)
        if self.out_type == 'cls_token':
            return (self.norm(x)[:, 0],)
        return tuple(outs)

    # ---- timm's model interface (forward stays OpenMMLab's tuple) -----------------------------------------------
    @property
    def num_features(self) -> int:
        """Width of the features ``forward_head`` pools (timm's name)."""
        return self.embed_dims

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm: the final-normed tokens (B, 1 + h*w, C), or in 'featmap' mode the last map (B, C, h, w)."""
        x, _ = self._encode(x)
        return self.norm(x) if self.out_type == 'cls_token' else x.permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm: pool :meth:`forward_features` (class token, or the average with ``global_pool='avg'``) and apply
        the classifier set by :meth:`reset_classifier` (none by default)."""
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        elif self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        else:
            x = x[:, 0]
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """timm: a new linear classifier with ``num_classes`` outputs (0: none); ``global_pool`` 'token' | 'avg'."""
        if global_pool is not None:
            if global_pool not in ('token', 'avg'):
                raise ValueError(f'global_pool must be "token" or "avg", got {global_pool!r}')
            self.global_pool = global_pool
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.embed_dims, self.num_classes) if self.num_classes > 0 else nn.Identity()
        if self.num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def get_classifier(self) -> nn.Module:
        return self.head

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm: activation checkpointing per position (same as ``with_cp``)."""
        self.with_cp = bool(enable)

    def no_weight_decay(self) -> set:
        """timm: parameters its optimizer factory keeps out of weight decay."""
        return {'pos_embed', 'cls_token'}

    @property
    def pretrained_cfg(self) -> Dict[str, Any]:
        """timm: input and normalisation of the model (``timm.data.resolve_data_config`` reads it)."""
        cfg = getattr(self, '_pretrained_cfg', None)
        if cfg is not None:
            return cfg
        return dict(input_size=(self.patch_embed.proj.in_channels, *self.img_size), interpolation='bicubic',
                    crop_pct=0.875, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    num_classes=self.num_classes, first_conv='patch_embed.proj', classifier='head')

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: Mapping[str, Any]) -> None:
        self._pretrained_cfg = dict(value)
