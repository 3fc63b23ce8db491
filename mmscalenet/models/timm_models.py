"""ScaleNet classifiers for timm: ``timm.create_model('scalenet_deit_small_patch16_224_d24', ...)`` (torch + timm).

Importing this module registers the models below with timm (``import mmscalenet`` does it when timm is installed).
Each is a :class:`ScaleNetViT` (``scalenet_deit_*``) or a grown :class:`ScaleNetSwin` (``scalenet_swin_*``) with
timm's classifier head whose ``forward`` returns logits, as every timm model's does, and timm's whole model
interface (``models/timm_face.py``): ``features_only=True``, ``forward_intermediates``, TorchScript, torch.fx.
No weights are hosted: ``pretrained=True`` needs a local file, given as ``pretrained_cfg_overlay=dict(file=PATH)``.
The file may be timm's / DeiT's pretrained ViT or Swin (grown at load time, as ScaleNet starts), a ScaleNet
checkpoint (``tools/expand.py``, ``save_scalenet``), or a ``ScaleNetClassifier`` training checkpoint; its classifier
head is loaded when it has ``num_classes`` outputs.

    model = timm.create_model('scalenet_deit_small_patch16_224_d24', pretrained=True,
                              pretrained_cfg_overlay=dict(file='deit_small_patch16_224.pth'))
"""

from typing import Any, Dict, Mapping, Union

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..checkpoint import (backbone_state_dict, convert_for_model, load_into_backbone, resolve_checkpoint,
                          split_checkpoint, timm_head)
from .swin import ScaleNetSwin
from .vit import ScaleNetViT


class ScaleNetVisionTransformer(ScaleNetViT):
    """timm-style ScaleNet classifier: ``forward(x) = forward_head(forward_features(x))`` (logits).

    Args:
        num_classes: classifier outputs (0: ``forward`` returns the pooled features).
        global_pool: 'token' (class token, DeiT), 'avg' or '' (none: ``forward`` returns the tokens).
        in_chans: timm's name of ``in_channels``.
        drop_rate: dropout before the classifier (timm's ``drop_rate``).
        dynamic_img_size: accepted for timm's API; every input size runs either way (the position embedding is
            resampled to the input's grid).
        **kwargs: :class:`ScaleNetViT` arguments (``arch``, ``depth``, ``mapping``, ``adapter``, ...).
    """

    timm_classifier = True   # torch.jit.script: the mirror returns logits (models/scripting.py)

    def __init__(self, num_classes: int = 1000, global_pool: str = 'token', in_chans: int = 3,
                 drop_rate: float = 0.0, dynamic_img_size: bool = True, **kwargs: Any):
        kwargs.setdefault('in_channels', in_chans)
        if kwargs.get('out_type', 'cls_token') != 'cls_token':
            raise ValueError('a timm ScaleNet classifier needs out_type="cls_token"')
        super().__init__(**kwargs)
        self.head_drop = torch.nn.Dropout(drop_rate)
        self.reset_classifier(num_classes, global_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(x))

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
        """Backbone expanded to the plan (see :func:`load_into_backbone`), and the head when its shape fits."""
        obj = resolve_checkpoint(checkpoint)
        report = load_into_backbone(self, obj)
        _, head = backbone_state_dict(split_checkpoint(obj)[0])
        head = timm_head(head, self.embed_dims)
        fits = isinstance(self.head, torch.nn.Linear) and head and head['weight'].shape == self.head.weight.shape
        if fits:
            self.head.load_state_dict(head)
        report['head'] = 'loaded' if fits else 'new'
        return report


class ScaleNetSwinTransformer(ScaleNetSwin):
    """timm-style grown Swin classifier: ``forward(x) = forward_head(forward_features(x))`` (logits); timm's
    ``SwinTransformer`` face (NHWC features, ``head.fc``; ``models/swin_face.py``).

    Args:
        num_classes, global_pool ('avg' | ''), in_chans, drop_rate: as timm's Swin.
        **kwargs: :class:`ScaleNetSwin` arguments (``arch``, ``depths``, ``mapping``, ``adapter``, ...).
    """

    timm_classifier = True

    def __init__(self, num_classes: int = 1000, global_pool: str = 'avg', in_chans: int = 3,
                 drop_rate: float = 0.0, dynamic_img_size: bool = True, **kwargs: Any):
        kwargs.setdefault('in_channels', in_chans)
        if kwargs.setdefault('out_type', 'pooled') != 'pooled':
            raise ValueError('a timm ScaleNet Swin classifier needs out_type="pooled"')
        super().__init__(**kwargs)
        self.num_features = self.head_hidden_size   # timm's meaning: the width forward_head pools
        self._init_head(num_classes, global_pool, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(x))

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]], *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """Stages expanded to the plans (``load_into_swin``), and the classifier when its shape fits."""
        obj = resolve_checkpoint(checkpoint)
        report = super().load_pretrained(obj, *args, **kwargs)
        state = split_checkpoint(obj)[0]
        head = {k.split('.', 1)[1]: v for k, v in state.items() if k.startswith('head.')}
        head = timm_head(head, self.head_hidden_size)
        fits = self.num_classes > 0 and head and head['weight'].shape == self.head.fc.weight.shape
        if fits:
            self.head.fc.load_state_dict(head)
        report['head'] = 'loaded' if fits else 'new'
        return report


# Each name: (arch, depth). The recipe of configs/imagenet/scalenet_*: cyclic map, parallel adapters (bottleneck 16).
VARIANTS = {
    'scalenet_deit_tiny_patch16_224_d24': ('deit-tiny', 24),
    'scalenet_deit_small_patch16_224_d24': ('deit-small', 24),
    'scalenet_deit_small_patch16_224_d36': ('deit-small', 36),
    'scalenet_deit_base_patch16_224_d24': ('deit-base', 24),
}
DEFAULT_ADAPTER = dict(type='ParallelAdapter', bottleneck=16, sites=('attn', 'mlp'))


# Swin names: timm's base name, then _d{total grown depth}. Swin-T (2, 2, 6, 2) grown to Swin-S depth (2, 2, 18, 2).
SWIN_VARIANTS = {
    'scalenet_swin_tiny_patch4_window7_224_d24': ('swin-tiny', (2, 2, 18, 2)),
}


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    # custom_load: timm hands the file to the model's load_pretrained, which expands plain ViTs / Swins
    cfg = dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(14, 14), crop_pct=0.875,
               interpolation='bicubic', fixed_input_size=False, mean=(0.485, 0.456, 0.406),
               std=(0.229, 0.224, 0.225), first_conv='patch_embed.proj', classifier='head', custom_load=True,
               license='apache-2.0', paper_ids='arXiv:2510.18431')
    cfg.update(kwargs)
    return cfg


default_cfgs = generate_default_cfgs({
    **{f'{name}.untrained': _cfg() for name in VARIANTS},
    **{f'{name}.untrained': _cfg(pool_size=(7, 7), classifier='head.fc') for name in SWIN_VARIANTS}})


def checkpoint_filter_fn(state: Mapping[str, torch.Tensor], model: ScaleNetVisionTransformer) -> Dict[str, Any]:
    """timm's filter for in-memory state dicts (``pretrained_cfg_overlay=dict(state_dict=...)``): expand a plain
    ViT to the plan, keep the head when it fits, and fill what the source lacks (adapters) with the model's own
    initial values, so timm's strict load succeeds."""
    backbone, head = backbone_state_dict(split_checkpoint(state)[0])
    converted, _ = convert_for_model(model, backbone, split_checkpoint(state)[1])
    own = model.state_dict()
    out = {k: v for k, v in converted.items() if k in own}
    head = timm_head(head, model.embed_dims)
    if head and 'head.weight' in own and head['weight'].shape == own['head.weight'].shape:
        out.update({'head.weight': head['weight'], 'head.bias': head['bias']})
    for key, value in own.items():
        out.setdefault(key, value)
    return out


def _overlay(kwargs: Dict[str, Any]) -> None:
    overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
    if overlay.get('file') or overlay.get('url'):
        # timm resets custom_load when a source is given: a file goes to load_pretrained (plan metadata kept)
        overlay.setdefault('custom_load', True)
        kwargs['pretrained_cfg_overlay'] = overlay


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> ScaleNetVisionTransformer:
    arch, depth = VARIANTS[variant]
    kwargs.setdefault('arch', arch)
    kwargs.setdefault('depth', depth)
    kwargs.setdefault('adapter', DEFAULT_ADAPTER)
    _overlay(kwargs)
    # features_only: timm's FeatureGetterNet over forward_intermediates, the last 3 positions by default (as timm's
    # ViT); out_indices here are feature positions, not the backbone's 'featmap' outputs
    feature_cfg = dict(feature_cls='getter', out_indices=kwargs.pop('out_indices', 3) if kwargs.get('features_only')
                       else 3)
    return build_model_with_cfg(ScaleNetVisionTransformer, variant, pretrained,
                                pretrained_filter_fn=checkpoint_filter_fn, feature_cfg=feature_cfg, **kwargs)


def _create_swin(variant: str, pretrained: bool = False, **kwargs: Any) -> ScaleNetSwinTransformer:
    arch, depths = SWIN_VARIANTS[variant]
    kwargs.setdefault('arch', arch)
    kwargs.setdefault('depths', depths)
    kwargs.setdefault('adapter', DEFAULT_ADAPTER)
    _overlay(kwargs)
    out = kwargs.pop('out_indices', (0, 1, 2, 3)) if kwargs.get('features_only') else (0, 1, 2, 3)
    return build_model_with_cfg(ScaleNetSwinTransformer, variant, pretrained,
                                feature_cfg=dict(feature_cls='getter', out_indices=out), **kwargs)


@register_model
def scalenet_deit_tiny_patch16_224_d24(pretrained: bool = False, **kwargs: Any) -> ScaleNetVisionTransformer:
    """DeiT-Tiny grown from 12 to 24 layers (shared weights, parallel adapters)."""
    return _create('scalenet_deit_tiny_patch16_224_d24', pretrained, **kwargs)


@register_model
def scalenet_deit_small_patch16_224_d24(pretrained: bool = False, **kwargs: Any) -> ScaleNetVisionTransformer:
    """DeiT-Small grown from 12 to 24 layers (shared weights, parallel adapters)."""
    return _create('scalenet_deit_small_patch16_224_d24', pretrained, **kwargs)


@register_model
def scalenet_deit_small_patch16_224_d36(pretrained: bool = False, **kwargs: Any) -> ScaleNetVisionTransformer:
    """DeiT-Small grown from 12 to 36 layers (each layer used three times)."""
    return _create('scalenet_deit_small_patch16_224_d36', pretrained, **kwargs)


@register_model
def scalenet_deit_base_patch16_224_d24(pretrained: bool = False, **kwargs: Any) -> ScaleNetVisionTransformer:
    """DeiT-Base grown from 12 to 24 layers (shared weights, parallel adapters)."""
    return _create('scalenet_deit_base_patch16_224_d24', pretrained, **kwargs)


@register_model
def scalenet_swin_tiny_patch4_window7_224_d24(pretrained: bool = False, **kwargs: Any) -> ScaleNetSwinTransformer:
    """Swin-T grown to Swin-S depth: stage 3 from 6 to 18 blocks (shared weights, parallel adapters)."""
    return _create_swin('scalenet_swin_tiny_patch4_window7_224_d24', pretrained, **kwargs)
