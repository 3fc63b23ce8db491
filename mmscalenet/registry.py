"""OpenMMLab glue: register mmscalenet's components into mmdet's registries (imported by ``import mmscalenet``).

Importing it changes nothing in mmengine's own behaviour: safe checkpoint loading and atomic writes are opt-in
(``mmscalenet.checkpoint.safe_mmengine_io()``, ``SafeCheckpointIOHook``). The additions are this package's entry
in mmengine's ``PACKAGE::`` config table (:func:`register_config_scheme`) and mmengine's checkpoint data types on
torch's ``weights_only`` allow-list (``mmscalenet/mmengine_globals.py``), so that mmdet's ``init_detector`` /
``DetInferencer`` and mmengine's ``load_checkpoint`` read trained checkpoints, still without running anything in them.
"""
from mmdet.registry import MODELS

from .mmengine_globals import register as _register_mmengine_globals

from .models.mm_backbone import ScaleNetSwinModule, ScaleNetViTModule

# the pure-torch backbones with mmengine's init_cfg semantics and OpenMMLab's frozen_stages / norm_eval, under the
# backbones' own names
MODELS.register_module(name='ScaleNetViT', module=ScaleNetViTModule)
MODELS.register_module(name='ScaleNetSwin', module=ScaleNetSwinModule)

# Modules below register themselves with decorators on import.
from . import datasets, engine, evaluation, visualization  # noqa: E402,F401
from .models import classifier, simple_fpn  # noqa: E402,F401


def register_config_scheme() -> None:
    """Let mmengine resolve ``_base_ = 'mmscalenet::coco/CONFIG.py'`` (the installed package's ``.mim/configs``).

    mmengine only follows ``PACKAGE::`` for the OpenMMLab packages in its own table; adding this package there is
    what mmdet & co. get by being listed (an entry for this name only: nothing that others look up changes).
    mmengine's ``get_installed_path`` is wrapped only where its own answer has no ``.mim`` while the imported package
    has one: an editable install (PEP 660 puts only a finder in site-packages, so mmengine's guess
    ``site-packages/mmscalenet`` does not exist). The wrapper answers for this package only and passes every other
    package to mmengine's function. Configs are read after ``import mmscalenet`` (the tools do it first).
    """
    import os.path as osp

    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault('mmscalenet', 'mmscalenet')
    find = config_module.get_installed_path
    here = osp.dirname(osp.abspath(__file__))
    if getattr(find, '_mmscalenet', False) or not osp.isdir(osp.join(here, '.mim')):
        return
    if osp.isdir(osp.join(_mmengine_guess(here), '.mim')):
        return   # a regular install (or a checkout on the path): mmengine finds the configs itself

    def get_installed_path(package: str) -> str:
        """mmengine's lookup, except that for this package an editable install resolves to the imported package,
        whose ``.mim`` the install linked to the checkout's configs."""
        path = find(package)
        if package == 'mmscalenet' and not osp.isdir(osp.join(path, '.mim')):
            return here
        return path

    get_installed_path._mmscalenet = True
    config_module.get_installed_path = get_installed_path


def _mmengine_guess(here: str) -> str:
    """Where mmengine's ``get_installed_path('mmscalenet')`` looks: the installed distribution's ``mmscalenet``
    folder, or the imported package when no distribution is installed (read with importlib.metadata, which is
    cheaper than mmengine's pkg_resources)."""
    import importlib.metadata
    try:
        return str(importlib.metadata.distribution('mmscalenet').locate_file('mmscalenet'))
    except importlib.metadata.PackageNotFoundError:
        return here


register_config_scheme()
_register_mmengine_globals()
