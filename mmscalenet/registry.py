"""OpenMMLab glue: register mmscalenet's components into mmdet's registries (imported by ``import mmscalenet``)."""
from mmdet.registry import MODELS

from .checkpoint import install_mmengine_safe_load
from .models.mm_backbone import ScaleNetViTModule
from .models.swin import ScaleNetSwin

# the pure-torch ScaleNetViT with mmengine's init_cfg semantics, under the backbone's own name
MODELS.register_module(name='ScaleNetViT', module=ScaleNetViTModule)
MODELS.register_module(module=ScaleNetSwin)

# Modules below register themselves with decorators on import.
from . import datasets, engine, evaluation, visualization  # noqa: E402,F401
from .models import classifier, simple_fpn  # noqa: E402,F401

install_mmengine_safe_load()


def register_config_scheme() -> None:
    """Let mmengine resolve ``_base_ = 'mmscalenet::coco/CONFIG.py'`` (the installed package's ``.mim/configs``).

    mmengine only follows ``PACKAGE::`` for the OpenMMLab packages in its own table; adding this package there is
    what mmdet & co. get by being listed. Configs are read after ``import mmscalenet`` (the tools do it first).
    """
    import os.path as osp

    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault('mmscalenet', 'mmscalenet')
    find = config_module.get_installed_path
    if getattr(find, '_mmscalenet', False):
        return
    here = osp.dirname(osp.abspath(__file__))

    def get_installed_path(package: str) -> str:
        """mmengine's lookup, except that for this package an editable install (PEP 660 puts only a finder in
        site-packages, so mmengine's guess ``site-packages/mmscalenet`` does not exist) resolves to the imported
        package, whose ``.mim`` the install linked to the checkout's configs."""
        path = find(package)
        if package == 'mmscalenet' and not osp.isdir(osp.join(path, '.mim')) and osp.isdir(osp.join(here, '.mim')):
            return here
        return path

    get_installed_path._mmscalenet = True
    config_module.get_installed_path = get_installed_path


register_config_scheme()
