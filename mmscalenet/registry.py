"""OpenMMLab glue: register mmscalenet's components into mmdet's registries (imported by ``import mmscalenet``)."""
from mmdet.registry import MODELS

from .checkpoint import install_mmengine_safe_load
from .models.mm_backbone import ScaleNetViTModule

# the pure-torch ScaleNetViT with mmengine's init_cfg semantics, under the backbone's own name
MODELS.register_module(name='ScaleNetViT', module=ScaleNetViTModule)

# Modules below register themselves with decorators on import.
from . import datasets, engine, evaluation  # noqa: E402,F401
from .models import classifier, simple_fpn  # noqa: E402,F401

install_mmengine_safe_load()


def register_config_scheme() -> None:
    """Let mmengine resolve ``_base_ = 'mmscalenet::coco/CONFIG.py'`` (the installed package's ``.mim/configs``).

    mmengine only follows ``PACKAGE::`` for the OpenMMLab packages in its own table; adding this package there is
    what mmdet & co. get by being listed. Configs are read after ``import mmscalenet`` (the tools do it first).
    """
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault('mmscalenet', 'mmscalenet')


register_config_scheme()
