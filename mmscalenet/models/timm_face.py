"""timm's model interface for the grown backbones (torch + timm only): what ``timm.create_model`` users and timm's own
model tests call — ``forward_features`` / ``forward_head``, ``reset_classifier`` (``(0, '')`` included),
``head_hidden_size``, ``feature_info``, ``forward_intermediates`` (timm's signature) / ``get_intermediate_layers``,
``prune_intermediate_layers`` (``features_only=True``), ``group_matcher``, ``pretrained_cfg`` / ``default_cfg``.

``TimmFace`` holds what both families share; ``ViTTimmFace`` and ``SwinTimmFace`` (``models/swin_face.py``) add the
family's token layout. The backbones' own ``forward`` stays OpenMMLab's tuple; the timm classifiers
(``models/timm_models.py``) make ``forward`` timm's logits. Grouping for layer decay: a shared block gets the group
of the first position that runs it, so it is never slowed down relative to the plain model (see DESIGN.md).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from timm.models._features import feature_take_indices
from torch import nn

from .adapters import _fx_tracing

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# True while torch.fx traces the model: input checks (Python control flow on shapes) are left out then
is_fx_tracing = _fx_tracing


def first_positions(sources: Sequence[int]) -> Dict[int, int]:
    """Base layer -> first position that runs it (its group for layer decay)."""
    first: Dict[int, int] = {}
    for p, j in enumerate(sources):
        first.setdefault(j, p)
    return first


class TimmFace:
    """Shared timm interface. The host sets ``num_classes``, ``global_pool``, ``head``, ``head_drop`` and defines
    ``head_hidden_size``, ``_default_pretrained_cfg``, ``_pool_types`` and ``_new_head``."""

    _pool_types: Tuple[str, ...] = ()
    dynamic_img_size = True   # every input size runs (pos-embed resampling / padded windows), as timm's flag asks

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """timm: a new classifier with ``num_classes`` outputs (0: none); ``global_pool`` one of ``_pool_types``
        (``''``: no pooling, ``forward`` returns the unpooled features)."""
        if global_pool is not None:
            if global_pool not in self._pool_types:
                raise ValueError(f'global_pool must be one of {self._pool_types}, got {global_pool!r}')
            self.global_pool = global_pool
        self.num_classes = int(num_classes)
        self.head = self._new_head(self.num_classes)

    def _linear_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.head_hidden_size, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def get_classifier(self) -> nn.Module:
        return self.head

    def get_intermediate_layers(self, x: torch.Tensor, n: Union[int, Sequence[int]] = 1, reshape: bool = False,
                                norm: bool = False, **kwargs: Any) -> List[torch.Tensor]:
        """timm / DINO: the outputs of the last ``n`` layers (or of the indices ``n``), NCHW with ``reshape``."""
        return self.forward_intermediates(x, n, norm=norm, output_fmt='NCHW' if reshape else 'NLC',
                                          intermediates_only=True, **kwargs)

    @property
    def pretrained_cfg(self) -> Dict[str, Any]:
        """timm: input, pooled size and normalisation of the model (``timm.data.resolve_data_config`` reads it)."""
        cfg = self.__dict__.get('_pretrained_cfg')
        return cfg if cfg is not None else self._default_pretrained_cfg()

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: Mapping[str, Any]) -> None:
        self.__dict__['_pretrained_cfg'] = dict(value)

    # timm's older name of the same dict
    default_cfg = pretrained_cfg

    def _base_cfg(self, pool_size: Tuple[int, int], first_conv: str, classifier: str) -> Dict[str, Any]:
        return dict(input_size=(self.patch_embed.proj.in_channels, *self.img_size), pool_size=pool_size,
                    interpolation='bicubic', crop_pct=0.875, fixed_input_size=False, mean=MEAN, std=STD,
                    num_classes=self.num_classes, first_conv=first_conv, classifier=classifier)


class ViTTimmFace(TimmFace):
    """timm's interface of :class:`~mmscalenet.models.vit.ScaleNetViT` (as timm's ``VisionTransformer``): tokens
    (B, 1 + h*w, C) from ``forward_features`` in class-token mode, the last map (B, C, h, w) in 'featmap' mode."""

    _pool_types = ('token', 'avg', '')

    @property
    def head_hidden_size(self) -> int:
        return self.embed_dims

    @property
    def num_features(self) -> int:
        """Width of the features ``forward_head`` pools (timm's name)."""
        return self.embed_dims

    def _new_head(self, num_classes: int) -> nn.Module:
        return self._linear_head(num_classes)

    @property
    def feature_info(self) -> List[Dict[str, Any]]:
        """One entry per depth position (timm's ViT lists its blocks)."""
        return [dict(module=f'positions.{p}', num_chs=self.embed_dims, reduction=self.patch_size)
                for p in range(len(self.positions))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm: the final-normed tokens (B, 1 + h*w, C), or in 'featmap' mode the last map (B, C, h, w)."""
        return self._final(self._encode(x)[0])

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.out_type == 'cls_token' else x.permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm: pool :meth:`forward_features` (class token, average of the patch tokens, or none with
        ``global_pool=''``), dropout ``drop_rate``, then the classifier set by :meth:`reset_classifier`."""
        if self.out_type == 'featmap':
            x = x.mean(dim=(2, 3)) if self.global_pool else x
        elif self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        elif self.global_pool == 'token':
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = 'NCHW', intermediates_only: bool = False, output_dict: bool = False,
                              attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False) -> Any:
        """timm's ``VisionTransformer.forward_intermediates``: the outputs of the positions ``indices`` (the last n
        for an int, all for None), NCHW or NLC, without the class token (``return_prefix_tokens`` pairs it with
        each); and the final features (:meth:`forward_features`) unless ``intermediates_only``."""
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f'output_fmt must be "NCHW" or "NLC", got {output_fmt!r}')
        if attn_mask is not None or is_causal:
            raise ValueError('ScaleNetViT.forward_intermediates takes no attn_mask / is_causal (image models only)')
        take, max_index = feature_take_indices(len(self.positions), indices)
        B = x.shape[0]
        x, grid = self._embed(x)
        last = max_index if stop_early else len(self.positions) - 1
        inter: List[torch.Tensor] = []
        for p in range(last + 1):
            x = self._run(p, x)
            if p in take:
                inter.append(self.norm(x) if norm and self.norm is not None else x)
        prefix = None
        if self.out_type == 'cls_token':
            prefix = [y[:, :1] for y in inter]
            inter = [y[:, 1:] for y in inter]
            if output_fmt == 'NCHW':
                inter = [y.reshape(B, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous() for y in inter]
        elif output_fmt == 'NCHW':
            inter = [y.permute(0, 3, 1, 2).contiguous() for y in inter]
        else:
            inter = [y.flatten(1, 2) for y in inter]
        if output_dict:
            out: Dict[str, Any] = dict(image_intermediates=inter)
            if prefix is not None and return_prefix_tokens:
                out['image_intermediates_prefix'] = prefix
            if not intermediates_only:
                out['image_features'] = self._final(x)
            return out
        if return_prefix_tokens and prefix is not None:
            inter = list(zip(inter, prefix))
        return inter if intermediates_only else (self._final(x), inter)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """timm (``features_only``): drop the positions after the last one ``indices`` needs (and the final norm /
        the head). The shared blocks stay; the model is then a feature extractor, not a checkpoint source."""
        take, max_index = feature_take_indices(len(self.positions), indices)
        self.positions = self.positions[:max_index + 1]
        if prune_norm and self.norm is not None:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm's parameter groups (layer decay, freezing): position p is layer p; a shared block is the layer of
        the first position that runs it."""
        first = first_positions(self.plan.sources)
        return dict(stem=r'^cls_token|^pos_embed|^patch_embed',
                    blocks=[(r'^positions\.(\d+)\.', None)]
                    + [(rf'^blocks\.{j}\.', (p,)) for j, p in sorted(first.items())]
                    + [(r'^norm', (99999,))])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm: activation checkpointing per position (same as ``with_cp``)."""
        self.with_cp = bool(enable)

    def no_weight_decay(self) -> set:
        """timm: parameters its optimizer factory keeps out of weight decay."""
        return {'pos_embed', 'cls_token'}

    def _default_pretrained_cfg(self) -> Dict[str, Any]:
        return self._base_cfg(self.grid, 'patch_embed.proj', 'head')
