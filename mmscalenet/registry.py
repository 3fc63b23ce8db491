"""OpenMMLab glue: register mmscalenet's components into mmdet's registries (imported by ``import mmscalenet``)."""
from mmdet.registry import MODELS

from .checkpoint import install_mmengine_safe_load
from .models.swin import ScaleNetSwin
from .models.vit import ScaleNetViT

MODELS.register_module(module=ScaleNetViT)
MODELS.register_module(module=ScaleNetSwin)

# Modules below register themselves with decorators on import.
from . import datasets, engine, evaluation  # noqa: E402,F401
from .models import classifier, simple_fpn  # noqa: E402,F401

install_mmengine_safe_load()
