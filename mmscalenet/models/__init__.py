"""Models: the ScaleNet backbone and its adapters (pure torch), plus OpenMMLab glue modules."""
from .adapters import LoRA, ParallelAdapter, parse_adapter_cfg
from .swin import SWIN_ARCHS, ScaleNetSwin, resolve_swin_arch
from .vit import ARCHS, ScaleNetViT, resolve_arch

__all__ = ['ARCHS', 'LoRA', 'ParallelAdapter', 'SWIN_ARCHS', 'ScaleNetSwin', 'ScaleNetViT', 'parse_adapter_cfg',
           'resolve_arch', 'resolve_swin_arch']
