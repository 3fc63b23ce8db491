"""Parameters and FLOPs of ScaleNet backbones, counted by mmengine's ``FlopAnalyzer`` (OpenMMLab glue).

The counter traces the model with ``torch.jit``; ``ScaleNetViT`` then runs its adapters as plain ops (the fused
custom kernels compute the same products but are invisible to the tracer), so the count includes every adapter and
shared-linear product. One multiply-add counts as one FLOP (mmengine's / fvcore's convention), and attention's two
batched products (``q k^T`` and ``attn v``, inside ``scaled_dot_product_attention``) are counted too, which mmengine
does not do by default: without them a ViT's FLOPs fall short of the published DeiT figures (DeiT-S: 4.6 G).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .models.vit import ScaleNetViT


def _sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::scaled_dot_product_attention``: (B..., N, d) queries against (B..., M, d) keys and (B..., M, dv)
    values -> ``B... * N * M * (d + dv)`` multiply-adds."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    *batch, n, d = q
    return math.prod(batch) * n * k[-2] * (d + v[-1])


EXTRA_FLOP_HANDLES = {'aten::scaled_dot_product_attention': _sdpa_flop_jit}


def count_attention_in_mmengine() -> None:
    """Add the handles of :data:`EXTRA_FLOP_HANDLES` to mmengine's default ``FlopAnalyzer`` handles where mmengine
    has none for the operator (it has none for SDPA), so that mmengine's ``get_model_complexity_info`` (mmdet's
    ``get_flops.py``) counts attention's products instead of skipping them silently. Called by ``import
    mmscalenet`` (registry.py); an operator mmengine already counts keeps mmengine's handle."""
    from mmengine.analysis import complexity_analysis
    for op, handle in EXTRA_FLOP_HANDLES.items():
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.setdefault(op, handle)


def count_complexity(model: nn.Module, inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]]) -> Dict[str, Any]:
    """``dict(flops, params, unsupported)`` of ``model`` on ``inputs`` (unique parameters: shared ones once).

    ``unsupported`` maps the operators the counter skipped (element-wise ones such as GELU or softmax-free adds
    are not FLOPs in this convention) to how often they ran.
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs).set_op_handle(**EXTRA_FLOP_HANDLES)
            analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
            flops = int(analyzer.total())
            unsupported = dict(analyzer.unsupported_ops())
    finally:
        model.train(was_training)
    return dict(flops=flops, params=int(parameter_count(model)['']), unsupported=unsupported)


def plain_vit_like(backbone: ScaleNetViT) -> ScaleNetViT:
    """The plain ViT of the same depth D as ``backbone``: D layers of its own (no sharing), no adapters.

    Same width, patch size, input grid and output mode (windows and relative positions included), so it is the
    model a user would otherwise train at that depth (for class-token mode: timm's ``VisionTransformer`` of depth D).
    """
    arch = dict(backbone.arch, num_layers=backbone.plan.depth)
    return ScaleNetViT(arch=arch, depth=backbone.plan.depth, adapter=None, img_size=backbone.img_size,
                       patch_size=backbone.patch_size, in_channels=backbone.patch_embed.proj.in_channels,
                       out_type=backbone.out_type, out_indices=backbone.out_indices,
                       window_size=backbone.window_size, global_indices=backbone.global_indices,
                       use_rel_pos=backbone.use_rel_pos)


def base_vit_like(backbone: ScaleNetViT) -> ScaleNetViT:
    """The pretrained L-layer ViT that ``backbone`` was grown from (no adapters, same output mode; with windows,
    its global positions are the default 4 spread over L, as the plain ViTDet configs have them)."""
    L = backbone.growth_plan.base_depth
    return ScaleNetViT(arch=dict(backbone.arch), depth=L, adapter=None, img_size=backbone.img_size,
                       patch_size=backbone.patch_size, in_channels=backbone.patch_embed.proj.in_channels,
                       out_type=backbone.out_type, out_indices=(L - 1,), window_size=backbone.window_size,
                       global_indices=None, use_rel_pos=backbone.use_rel_pos)


def input_channels(backbone: nn.Module) -> int:
    """The channels the backbone's patch embedding takes (timm's ``patch_embed.proj``, mmdet's
    ``patch_embed.projection``), 3 when it has neither."""
    embed = getattr(backbone, 'patch_embed', None)
    conv = getattr(embed, 'proj', None) or getattr(embed, 'projection', None)
    return conv.in_channels if isinstance(conv, nn.Conv2d) else 3


def backbone_rows(backbone: nn.Module, shape: Sequence[int], in_channels: Optional[int] = None,
                  compare: bool = True, progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """Rows ``dict(model, depth, params, flops, unsupported)`` for ``backbone`` at input ``shape`` (H, W), and,
    for a ``ScaleNetViT`` when ``compare``, its plain same-depth ViT and its base ViT. ``progress`` gets a line
    before and after each model's trace (a ViTDet backbone at 1024 takes tens of seconds per model on a CPU)."""
    if in_channels is None:
        in_channels = input_channels(backbone)
    x = torch.zeros(1, in_channels, int(shape[0]), int(shape[1]))
    models = [(describe(backbone), backbone)]
    if compare and isinstance(backbone, ScaleNetViT):
        models.append((f'plain ViT, same depth (no sharing, no adapters)', plain_vit_like(backbone)))
        if backbone.growth_plan.depth != backbone.growth_plan.base_depth:
            models.append((f'base ViT (pretrained depth)', base_vit_like(backbone)))
    rows = []
    for i, (name, model) in enumerate(models, 1):
        depth = model.plan.depth if isinstance(model, ScaleNetViT) else None
        start = time.perf_counter()
        if progress is not None:
            progress(f'[{i}/{len(models)}] counting {name} at {int(shape[0])}x{int(shape[1])} ...')
        rows.append(dict(model=name, depth=depth, **count_complexity(model, x)))
        if progress is not None:
            progress(f'[{i}/{len(models)}] done in {time.perf_counter() - start:.1f} s')
    return rows


def describe(backbone: nn.Module) -> str:
    """A one-line name: ``ScaleNetViT 12->24 cyclic, ParallelAdapter(bottleneck=8)``."""
    if not isinstance(backbone, ScaleNetViT):
        return type(backbone).__name__
    plan, adapter = backbone.growth_plan, backbone.adapter_cfg
    if adapter is None:
        extra = 'no adapters'
    elif adapter['type'] == 'ParallelAdapter':
        extra = f'ParallelAdapter(bottleneck={adapter["bottleneck"]})'
    else:
        extra = f'LoRA(rank={adapter["rank"]})'
    growth = '' if backbone.growth == 'shared' else f' as independent copies (growth={backbone.growth})'
    return f'ScaleNetViT {plan.base_depth}->{plan.depth}{growth}, {extra}'


def format_size(n: float, unit: str = '') -> str:
    """``21_970_000`` -> ``'21.97 M'`` (two decimals, SI prefix)."""
    for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(n) >= factor:
            return f'{n / factor:.2f} {prefix}{unit}'
    return f'{n:.0f} {unit}'.rstrip()


def rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`backbone_rows`."""
    lines = ['| backbone | depth | params | FLOPs |', '| --- | --- | --- | --- |']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["depth"] if r["depth"] is not None else "-"} | '
                     f'{format_size(r["params"])} | {format_size(r["flops"])} |')
    return '\n'.join(lines)
