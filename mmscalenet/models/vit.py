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
from timm.layers import resample_abs_pos_embed
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..expansion import (DepthPlan, MappingSpec, _unshared_names, check_growth, default_adapter, drop_path_rates,
                         make_depth_plan, spread_indices, stored_plan)
from .adapters import parse_adapter_cfg
from .position import Position, SharedBlock, _Attn, _Mlp, decomposed_rel_pos_bias  # noqa: F401 (re-exported)
from .shape_ops import pad_to_multiple, resample_pos_embed  # noqa: F401 (re-exported)
from .timm_face import ViTTimmFace, is_fx_tracing

torch.fx.wrap('pad_to_multiple')      # leaves for torch.fx in this module too (they branch on the input size)
torch.fx.wrap('resample_pos_embed')

ARCHS: Dict[str, Dict[str, Any]] = {
    'deit-tiny': dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4.0),
    'deit-small': dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4.0),
    'deit-base': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.0),
}
OUT_TYPES = ('cls_token', 'featmap')
# What ScaleNetViT.config() records: the constructor arguments that fix the architecture and the parameter set. The
# others (drop_path_rate, out_indices, with_cp, init_cfg) are run-time choices, given to from_config as overrides.
CONFIG_KEYS = ('arch', 'depth', 'mapping', 'adapter', 'function_preserving', 'unshared', 'img_size', 'patch_size',
               'in_channels', 'out_type', 'window_size', 'global_indices', 'use_rel_pos', 'growth')


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


class ScaleNetViT(ViTTimmFace, nn.Module):
    """ViT grown from ``arch``'s depth L to ``depth`` D with shared layer weights (ScaleNet).

    Args:
        arch: 'deit-tiny' | 'deit-small' | 'deit-base' | dict(embed_dims, num_layers, num_heads, mlp_ratio).
        depth: expanded depth D >= L (default L).
        mapping: 'cyclic' (default), 'interleave' or an explicit list of D base-layer indices.
        adapter: dict(type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')),
            dict(type='LoRA', rank=8, alpha=16, targets=('qkv', 'proj', 'fc1', 'fc2')) or None; 'auto' (default):
            parallel adapters for growth='shared', none for the copies.
        function_preserving: inserted positions get residual gates starting at 0, so at step 0 the grown model
            computes exactly the pretrained model (growth='shared'; the copies' counterpart is 'copy_zero').
        growth: 'shared' (ScaleNet, default): each base layer stored once. 'copy' / 'copy_zero': the paper's foil,
            progressive growth: position p stores its own copy of base layer ``mapping[p]`` (made when a plain
            L-layer checkpoint loads; 'copy_zero' zeroes the output projections of the inserted copies, so the
            model starts as the pretrained one). The copies are a plain ViT of depth D (``plan``: one layer per
            position); ``growth_plan`` says where they came from.
        unshared: ('norm',) gives each position its own LayerNorms, initialised from its source layer.
        img_size, patch_size: pretraining grid (the position embedding's size); other input sizes work.
        drop_path_rate: stochastic depth, linear over the D positions.
        out_type: 'cls_token' -> tuple with the final-normed class token (B, C); 'featmap' -> tuple of
            (B, C, ceil(H/16), ceil(W/16)) maps (ViTDet style, no class token) at ``out_indices``.
        out_indices: positions whose outputs are returned (default: the last): maps ('featmap') or class tokens
            ('cls_token'; the last position's through the final norm, the others raw, as mmpretrain's ViT).
        window_size: > 0 runs window attention in 'featmap' mode, except at ``global_indices``.
        global_indices: positions with global attention (default: 4 spread evenly over D, the last included).
        use_rel_pos: decomposed relative-position tables per position ('featmap' mode; zero-initialised).
        with_cp: activation checkpointing per position (non-reentrant).
        init_cfg: dict(type='Pretrained', checkpoint=PATH | 'timm:NAME' | URL) loads timm / DeiT / MAE /
            mmpretrain / ScaleNet checkpoints, expanding them to the plan.
    """

    def __init__(self, arch: Union[str, Mapping[str, Any]] = 'deit-small', depth: Optional[int] = None,
                 mapping: MappingSpec = 'cyclic', adapter: Union[str, Mapping[str, Any], None] = 'auto',
                 function_preserving: bool = False, unshared: Sequence[str] = (),
                 img_size: Union[int, Tuple[int, int]] = 224, patch_size: int = 16, in_channels: int = 3,
                 drop_path_rate: float = 0.0, out_type: str = 'cls_token',
                 out_indices: Optional[Sequence[int]] = None, window_size: int = 0,
                 global_indices: Optional[Sequence[int]] = None, use_rel_pos: bool = False,
                 with_cp: bool = False, init_cfg: Optional[Mapping[str, Any]] = None, growth: str = 'shared'):
        super().__init__()
        a = resolve_arch(arch)
        self.arch = a
        self.embed_dims, self.num_heads = a['embed_dims'], a['num_heads']
        self.growth = check_growth(growth)
        if function_preserving and growth != 'shared':
            raise ValueError(f'function_preserving gates belong to growth="shared"; the function-preserving copies '
                             f'are growth="copy_zero" (got growth={growth!r})')
        self.growth_plan: DepthPlan = make_depth_plan(a['num_layers'], depth, mapping)
        self.plan: DepthPlan = stored_plan(self.growth_plan, growth)
        D = self.plan.depth
        self.adapter_cfg = parse_adapter_cfg(default_adapter(adapter, growth))
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
        self.blocks = nn.ModuleList(SharedBlock(C, a['mlp_ratio'], not own_norms) for _ in range(self.plan.base_depth))
        rates = drop_path_rates(D, drop_path_rate)
        rel_size = max(self.grid) if use_rel_pos else 0
        self.positions = nn.ModuleList(
            Position(p, j, C, self.num_heads, a['mlp_ratio'], self.adapter_cfg, own_norms,
                     gated=function_preserving and self.plan.inserted[p], drop_path=rates[p],
                     window_size=0 if p in global_indices else window_size, rel_pos_size=rel_size,
                     dense=out_type == 'featmap')
            for p, j in enumerate(self.plan.sources))
        self.norm = nn.LayerNorm(C, eps=1e-6) if out_type == 'cls_token' else None
        self.init_cfg = dict(init_cfg) if init_cfg is not None else None
        # timm's interface (models/timm_face.py): reset_classifier sets the head; drop_rate of timm's classifiers
        self.num_classes, self.global_pool, self.head, self.head_drop = 0, 'token', nn.Identity(), nn.Identity()
        self.reset_parameters()

    # ---- the architecture as plain data --------------------------------------------------------------------
    def config(self) -> Dict[str, Any]:
        """The constructor arguments that rebuild this architecture and parameter set, as JSON-ready plain data
        (``CONFIG_KEYS``; the depth plan as the explicit per-position list of base layers)."""
        return plain_data(dict(
            arch=dict(self.arch), depth=self.plan.depth, mapping=list(self.growth_plan.sources),
            adapter=self.adapter_cfg,
            function_preserving=bool(self.function_preserving), unshared=list(self.unshared),
            img_size=list(self.img_size), patch_size=self.patch_size,
            in_channels=int(self.patch_embed.proj.in_channels), out_type=self.out_type,
            window_size=self.window_size, global_indices=list(self.global_indices), use_rel_pos=bool(self.use_rel_pos),
            growth=self.growth))

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
        """The grown stacks as (key prefix, depth plan, module with ``blocks`` / ``positions``): the trunk is one.
        The plan is the stored one (one layer per position for the copies: ``growth``)."""
        return [('', self.plan, self)]

    @property
    def growth_plans(self) -> Tuple[DepthPlan, ...]:
        """Per stack, which base layer each position grew from (``mapping``; for 'shared' the stored plan)."""
        return (self.growth_plan,)

    def set_fused(self, fused: bool) -> 'ScaleNetViT':
        """Switch between the fused (fast, default) and the plain reference implementation of the adapters."""
        for pos in self.positions:
            pos.set_fused(fused)
        return self

    def untied_block_state(self, p: int) -> Dict[str, torch.Tensor]:
        """Position ``p`` as a plain timm block's state dict (see :meth:`Position.export_state`)."""
        return self.positions[p].export_state(self.blocks[self.plan.sources[p]])

    # ---- forward ---------------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'ScaleNetViT expects images (B, C, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f'ScaleNetViT expects {self.patch_embed.proj.in_channels} input channels, got '
                             f'{x.shape[1]} (shape {tuple(x.shape)})')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f'ScaleNetViT got images of size 0 (shape {tuple(x.shape)}): H and W must be >= 1')

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Patch and position embedding: tokens (B, 1 + h*w, C) or map (B, h, w, C), and the grid (h, w)."""
        if not is_fx_tracing():   # Python checks on shapes: not in a traced graph
            self._check_input(x)
        x = self.patch_embed.proj(pad_to_multiple(x, self.patch_size))  # any input size: whole patches
        B, H, W = x.shape[0], x.shape[2], x.shape[3]
        cls_pos, spatial_pos = self._pos_embed_for((H, W))
        if self.out_type == 'cls_token':
            x = x.flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(B, -1, -1) + cls_pos, x + spatial_pos], dim=1)
        else:
            x = x.permute(0, 2, 3, 1) + spatial_pos.reshape(1, H, W, self.embed_dims)
        return x, (H, W)

    def _pos_embed_for(self, grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Class-slot and spatial position embeddings, the latter resized (bicubic) to ``grid`` if needed."""
        pos = resample_pos_embed(self.pos_embed, grid[0], grid[1], self.grid[0], self.grid[1])
        return pos[:, :1], pos[:, 1:]

    def _run(self, p: int, x: torch.Tensor) -> torch.Tensor:
        pos, block = self.positions[p], self.blocks[self.plan.sources[p]]
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(pos, x, block, use_reentrant=False)
        return pos(x, block)

    def _encode(self, x: torch.Tensor, collect: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Embedding and every position: (last hidden state, with ``collect`` the outputs at ``out_indices``)."""
        x, _ = self._embed(x)
        outs: List[torch.Tensor] = []
        last = len(self.positions) - 1
        for p in range(last + 1):
            x = self._run(p, x)
            if collect and p in self.out_indices:
                if self.out_type == 'featmap':
                    outs.append(x.permute(0, 3, 1, 2).contiguous())
                else:   # mmpretrain's convention: the final norm follows the last position only
                    outs.append((self.norm(x) if p == last else x)[:, 0])
        return x, outs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """OpenMMLab backbone output: the class token (final-normed at the last position, mmpretrain's
        ``out_type='cls_token'``) or the feature map at each of ``out_indices``."""
        return tuple(self._encode(x, collect=True)[1])

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Any ``load_state_dict`` (mmengine's ``load_checkpoint`` too) resizes a square ``pos_embed`` of another
        grid to this model's (bicubic, class slot kept), as mmpretrain's ViT does for a 224 checkpoint in a 384
        model."""
        key = prefix + 'pos_embed'
        value = state_dict.get(key)
        own = self.pos_embed
        if isinstance(value, torch.Tensor) and value.dim() == 3 and value.shape[0] == 1 and \
                value.shape[2] == own.shape[2] and value.shape[1] != own.shape[1]:
            side = math.isqrt(value.shape[1] - 1)
            if side * side == value.shape[1] - 1:
                state_dict[key] = resample_abs_pos_embed(value, list(self.grid), [side, side], num_prefix_tokens=1,
                                                         antialias=False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script(model)`` scripts this model's TorchScript mirror (same tensors, plain ops; see
        ``models/scripting.py``): the shared blocks are passed to the positions at call time, which TorchScript
        cannot express."""
        from .scripting import script_mirror
        return script_mirror(self)
