"""Models: the ScaleNet backbone and its adapters (pure torch), plus OpenMMLab glue modules."""
from .adapters import LoRA, ParallelAdapter, parse_adapter_cfg
from .vit import ARCHS, ScaleNetViT, resolve_arch

__all__ = ['ARCHS', 'LoRA', 'ParallelAdapter', 'ScaleNetViT', 'parse_adapter_cfg', 'resolve_arch']
