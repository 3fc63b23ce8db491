"""timm's model interface of :class:`~mmscalenet.models.swin.ScaleNetSwin` (as timm's ``SwinTransformer``: NHWC
features, ``layers.{s}`` stages, ``head.fc`` classifier), on top of :class:`~.timm_face.TimmFace`.

The backbone has no classifier (``num_classes=0``: timm's ``ClassifierHead`` without parameters, so the state dict
is unchanged); ``models/timm_models.py`` registers the grown Swin classifiers with timm.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

import torch
from timm.layers import ClassifierHead
from timm.models._features import feature_take_indices
from torch import nn

from .timm_face import TimmFace, first_positions


class SwinTimmFace(TimmFace):
    """timm's ``SwinTransformer`` interface: ``forward_features`` -> final-normed (B, h, w, C) map."""

    _pool_types = ('avg', '')
    output_fmt = 'NHWC'

    def _init_head(self, num_classes: int = 0, global_pool: str = 'avg', drop_rate: float = 0.0) -> None:
        if global_pool not in self._pool_types:
            raise ValueError(f'global_pool must be one of {self._pool_types}, got {global_pool!r}')
        self.num_classes, self.global_pool = int(num_classes), global_pool
        self.head = ClassifierHead(self.head_hidden_size, self.num_classes, pool_type=global_pool,
                                   drop_rate=drop_rate, input_fmt='NHWC')

    @property
    def head_hidden_size(self) -> int:
        return self.stage_dims[len(self.layers) - 1]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None and global_pool not in self._pool_types:
            raise ValueError(f'global_pool must be one of {self._pool_types}, got {global_pool!r}')
        self.num_classes = int(num_classes)
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(self.num_classes, pool_type=global_pool)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    @property
    def feature_info(self) -> List[Dict[str, Any]]:
        """One entry per stage (timm's Swin): width and stride of its output."""
        return [dict(num_chs=self.stage_dims[s], reduction=self.patch_size << s, module=f'layers.{s}')
                for s in range(len(self.layers))]

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self, f'norm{len(self.layers) - 1}', None)
        return x if norm is None else norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm: the last stage's map (B, h, w, C) through its LayerNorm (``norm{last}``, timm's ``norm``)."""
        x = self._stem(x)
        for stage in self.layers:
            x = stage(x)
        return self._final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm: average-pool (``global_pool='avg'``) or not (``''``), dropout ``drop_rate``, classifier."""
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False) -> Any:
        """timm's ``SwinTransformer.forward_intermediates``: the outputs of the stages ``indices`` (last n for an
        int, all for None) as NCHW or NHWC maps (``norm``: through their ``norm{s}`` where the model has one), and
        the final features (:meth:`forward_features`) unless ``intermediates_only``."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f'output_fmt must be "NCHW" or "NHWC", got {output_fmt!r}')
        take, max_index = feature_take_indices(len(self.layers), indices)
        x = self._stem(x)
        stages = self.layers[:max_index + 1] if stop_early else self.layers
        inter: List[torch.Tensor] = []
        for s, stage in enumerate(stages):
            x = stage(x)
            if s in take:
                y = getattr(self, f'norm{s}')(x) if norm and hasattr(self, f'norm{s}') else x
                inter.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == 'NCHW' else y)
        return inter if intermediates_only else (self._final_norm(x), inter)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """timm (``features_only``): drop the stages after the last one ``indices`` needs (and the final norm /
        the head)."""
        take, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        last = f'norm{max_index}'
        if prune_norm and hasattr(self, last):
            setattr(self, last, nn.Identity())
        if prune_head:
            self.reset_classifier(0, '')
        return take

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm's parameter groups: (stage, position); a shared block joins the first position that runs it."""
        blocks: List[Any] = [(r'^layers\.(\d+)\.downsample', (0,)), (r'^layers\.(\d+)\.positions\.(\d+)\.', None)]
        for s, plan in enumerate(self.plans):
            first = sorted(first_positions(plan.sources).items())
            blocks += [(rf'^layers\.{s}\.blocks\.{j}\.', (s, p)) for j, p in first]
        return dict(stem=r'^patch_embed', blocks=blocks + [(r'^norm', (99999,))])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm: activation checkpointing per position (``with_cp``)."""
        self.with_cp = bool(enable)
        for stage in self.layers:
            stage.with_cp = bool(enable)

    def no_weight_decay(self) -> set:
        """timm: the relative-position bias tables stay out of weight decay."""
        return {n for n, _ in self.named_parameters() if 'relative_position_bias_table' in n}

    def _default_pretrained_cfg(self) -> Dict[str, Any]:
        grid = [v // self.patch_size for v in self.img_size]
        for _ in range(len(self.layers) - 1):
            grid = [(v + 1) // 2 for v in grid]
        return self._base_cfg(tuple(grid), 'patch_embed.proj', 'head.fc')
