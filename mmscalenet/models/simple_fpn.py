"""Necks that turn the single-scale ViT feature map(s) of ``ScaleNetViT`` into a feature pyramid (mmdet MODELS).

* :class:`ScaleNetSimpleFPN` — ViTDet's simple feature pyramid: every level is made from the *last* backbone map
  by transposed convolutions (up) or max pooling (down), then a 1x1 lateral and a 3x3 output conv per level.
* :class:`ScaleNetMultiLevelNeck` — the classic recipe (Li et al., "Benchmarking detection transfer learning with
  vision transformers"): several backbone positions (``out_indices``), each rescaled to one level, then an
  ordinary top-down FPN (mmdet's ``FPN`` by default).
* :class:`LN2d` — timm's LayerNorm over the channels of an NCHW map (the norm of ViTDet's neck and heads).

Both necks accept a tensor or the backbone's tuple of maps, and a map of any stride: ``scale_factors`` says how
each level is made from it (powers of two; 4 = two 2x transposed convs, 0.5 = 2x2 max pooling). For a stride-16
backbone the default (4, 2, 1, 0.5) gives strides 4, 8, 16, 32 (+ 64 from ``num_outs=5``).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d
from torch import nn

Maps = Union[torch.Tensor, Sequence[torch.Tensor]]


class LN2d(LayerNorm2d):
    """timm's ``LayerNorm2d`` (LayerNorm over the channels of (B, C, H, W) maps, eps 1e-6), named for mmcv.

    ``_abbr_`` keeps the name mmcv's ``ConvModule`` gives the norm (``norm_layer``, as for the hand-written LN2d
    this replaces), so the state-dict keys of detectors trained before stay; a subclass of ``nn.LayerNorm``, so
    layer-wise lr decay treats it as a norm by type.
    """

    _abbr_ = 'norm_layer'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # timm returns a permuted (channels-last) view; mmcv's RoIAlign reads its input as contiguous NCHW and
        # silently samples garbage from such maps (the demo detectors stopped learning: mAP 0.51 -> 0.003)
        return super().forward(x).contiguous()


# mmdet's ViTDet project registers an ``LN2d`` of its own (same computation, eps 1e-6). Ours is registered under a
# unique name, so both packages import in either order (norm_cfg=dict(type='ScaleNetLN2d')).
MODELS.register_module(name='ScaleNetLN2d', module=LN2d)


def _level_exponent(factor: float) -> int:
    k = math.log2(factor) if factor > 0 else float('nan')
    if not math.isfinite(k) or abs(k - round(k)) > 1e-9:
        raise ValueError(f'scale factors must be powers of two (4, 2, 1, 0.5, 0.25, ...), got {factor!r}')
    return int(round(k))


def rescale_stage(channels: int, factor: float, norm_cfg: Optional[dict]) -> Tuple[nn.Module, int]:
    """A module that rescales a C-channel map by ``factor`` and its output channels.

    Up by 2^k: k transposed 2x2 convs, each halving the channels, with norm + GELU between them (ViTDet's fpn1);
    1: identity; down by 2^k: one 2^k x 2^k max pooling (channels kept).
    """
    k = _level_exponent(factor)
    if k == 0:
        return nn.Identity(), channels
    if k < 0:
        size = 2 ** (-k)
        return nn.MaxPool2d(kernel_size=size, stride=size), channels
    if channels % (2 ** k):
        raise ValueError(f'upsampling by {factor} halves the channels {k} times; {channels} is not divisible by '
                         f'{2 ** k}')
    layers: List[nn.Module] = []
    c = channels
    for i in range(k):
        layers.append(nn.ConvTranspose2d(c, c // 2, kernel_size=2, stride=2))
        c //= 2
        if i < k - 1:
            layers.append(build_norm_layer(norm_cfg, c)[1] if norm_cfg else nn.Identity())
            layers.append(nn.GELU())
    return nn.Sequential(*layers), c


def _as_maps(inputs: Maps) -> Tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(inputs)
    raise TypeError(f'the neck expects a (B, C, H, W) tensor or a non-empty tuple of them, got {type(inputs)}')


@MODELS.register_module()
class ScaleNetSimpleFPN(BaseModule):
    """ViTDet's simple feature pyramid from the last backbone map.

    Args:
        backbone_channel: channels C of the backbone map.
        out_channels: channels of every output level.
        num_outs: number of outputs; levels beyond ``len(scale_factors)`` are made by stride-2 max pooling of the
            last one (ViTDet's P6).
        scale_factors: how each level is made from the backbone map (powers of two).
        in_channels: optional, for configs written for mmdet's ``SimpleFPN``: must equal the channels the levels
            have (C/4, C/2, C, C for the default factors).
        norm_cfg: norm of the lateral / output convs and inside the upsampling stages (ViTDet: ``LN2d``).
    """

    def __init__(self, backbone_channel: int, out_channels: int = 256, num_outs: int = 5,
                 scale_factors: Sequence[float] = (4, 2, 1, 0.5), in_channels: Optional[Sequence[int]] = None,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = dict(type='ScaleNetLN2d'),
                 act_cfg: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not scale_factors:
            raise ValueError('scale_factors must name at least one level')
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} is smaller than the {len(scale_factors)} scale factors')
        self.backbone_channel, self.out_channels, self.num_outs = backbone_channel, out_channels, num_outs
        self.scale_factors = tuple(float(f) for f in scale_factors)
        stages, channels = [], []
        for f in self.scale_factors:
            stage, c = rescale_stage(backbone_channel, f, norm_cfg)
            stages.append(stage)
            channels.append(c)
        if in_channels is not None and list(in_channels) != channels:
            raise ValueError(f'in_channels={list(in_channels)} do not match the levels made from a '
                             f'{backbone_channel}-channel map with scale_factors={self.scale_factors}: {channels}')
        self.in_channels = channels
        self.stages = nn.ModuleList(stages)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False)
            for c in channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=act_cfg, inplace=False)
            for _ in channels)

    def forward(self, inputs: Maps) -> Tuple[torch.Tensor, ...]:
        x = _as_maps(inputs)[-1]
        if x.dim() != 4 or x.shape[1] != self.backbone_channel:
            raise ValueError(f'ScaleNetSimpleFPN(backbone_channel={self.backbone_channel}) got a map of shape '
                             f'{tuple(x.shape)}')
        outs = [fpn(lat(stage(x))) for stage, lat, fpn in zip(self.stages, self.lateral_convs, self.fpn_convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)


@MODELS.register_module()
class ScaleNetMultiLevelNeck(BaseModule):
    """Several backbone maps (one per ``out_indices`` position), each rescaled to one level, then an FPN.

    Args:
        in_channels: channels C of the backbone maps (all equal for a ViT).
        scale_factors: one factor per backbone map, e.g. (4, 2, 1, 0.5) for four stride-16 maps taken at
            D/4, D/2, 3D/4, D -> strides 4, 8, 16, 32.
        fpn: config of the pyramid applied to the rescaled maps (its ``in_channels`` is filled in), e.g.
            ``dict(type='FPN', out_channels=256, num_outs=5)``; None returns the rescaled maps.
        norm_cfg: norm between the transposed convs of the upsampling stages.
    """

    def __init__(self, in_channels: int, scale_factors: Sequence[float] = (4, 2, 1, 0.5),
                 fpn: Optional[dict] = dict(type='FPN', out_channels=256, num_outs=5),
                 norm_cfg: Optional[dict] = dict(type='ScaleNetLN2d'), init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not scale_factors:
            raise ValueError('scale_factors must name at least one level')
        self.scale_factors = tuple(float(f) for f in scale_factors)
        stages, channels = [], []
        for f in self.scale_factors:
            stage, c = rescale_stage(in_channels, f, norm_cfg)
            stages.append(stage)
            channels.append(c)
        self.in_channels, self.level_channels = in_channels, channels
        self.stages = nn.ModuleList(stages)
        if fpn is not None:
            fpn = dict(fpn)
            given = fpn.pop('in_channels', None)
            if given is not None and list(given) != channels:
                raise ValueError(f'fpn.in_channels={list(given)} do not match the rescaled levels {channels}')
            self.fpn = MODELS.build(dict(fpn, in_channels=channels))
        else:
            self.fpn = None

    def forward(self, inputs: Maps) -> Tuple[torch.Tensor, ...]:
        maps = _as_maps(inputs)
        if len(maps) != len(self.stages):
            raise ValueError(f'ScaleNetMultiLevelNeck has {len(self.stages)} scale factors but got {len(maps)} '
                             f'backbone maps: set the backbone\'s out_indices to {len(self.stages)} positions')
        outs = tuple(stage(x) for stage, x in zip(self.stages, maps))
        return self.fpn(outs) if self.fpn is not None else outs
