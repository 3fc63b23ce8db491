"""OpenMMLab glue: register mmscalenet's components into mmdet's registries, and into every other installed OpenMMLab
package whose configs use them (mmseg), from this one place (imported by ``import mmscalenet``).

Importing it changes nothing in mmengine's own behaviour: safe checkpoint loading and atomic writes are opt-in
(``mmscalenet.checkpoint.safe_mmengine_io()``, ``SafeCheckpointIOHook``). The additions are this package's entry
in mmengine's ``PACKAGE::`` config table (:func:`register_config_scheme`) and mmengine's checkpoint data types on
torch's ``weights_only`` allow-list (``mmscalenet/mmengine_globals.py``), so that mmdet's ``init_detector`` /
``DetInferencer`` and mmengine's ``load_checkpoint`` read trained checkpoints, still without running anything in them;
and a FLOP handle for ``scaled_dot_product_attention``, which mmengine's counter has none for
(``mmscalenet.analysis.count_attention_in_mmengine``: mmdet's ``get_flops.py`` then counts attention).
"""
from mmdet.registry import MODELS

from .analysis import count_attention_in_mmengine
from .mmengine_globals import register as _register_mmengine_globals

from .models.mm_backbone import ScaleNetSwinModule, ScaleNetViTModule

# the pure-torch backbones with mmengine's init_cfg semantics and OpenMMLab's frozen_stages / norm_eval, under the
# backbones' own names
MODELS.register_module(name='ScaleNetViT', module=ScaleNetViTModule)
MODELS.register_module(name='ScaleNetSwin', module=ScaleNetSwinModule)

# Modules below register themselves with decorators on import.
from . import datasets, engine, evaluation, visualization  # noqa: E402,F401
from .datasets import segmentation  # noqa: E402,F401  (mmseg configs' label check)
from .models import classifier, simple_fpn  # noqa: E402,F401

# Registries that mmscalenet's modules are mirrored into, per OpenMMLab package other than mmdet: the packages'
# registries are siblings under mmengine's root, so ``type='ScaleNetViT'`` under ``default_scope='mmseg'`` finds
# only what mmseg's own registries hold.
MIRRORED = ('MODELS', 'HOOKS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'METRICS', 'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS')
OTHER_PACKAGES = ('mmseg',)


def accepting_pretrained(cls):
    """``cls`` that also takes mmseg's ``pretrained=PATH`` (``EncoderDecoder`` copies ``model.pretrained`` into the
    backbone's arguments) as ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``; both at once is refused."""

    def __init__(self, *args, pretrained=None, **kwargs):
        if pretrained is not None:
            if kwargs.get('init_cfg'):
                raise ValueError(f'{cls.__name__}: give the checkpoint once, as init_cfg=dict(type="Pretrained", '
                                 f'checkpoint=...) or as pretrained=..., not both (pretrained={pretrained!r}, '
                                 f'init_cfg={kwargs["init_cfg"]!r})')
            kwargs['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained)
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), dict(__init__=__init__, __module__=cls.__module__, __doc__=cls.__doc__,
                                            __qualname__=cls.__qualname__))


def mirror_registrations(package: str) -> bool:
    """Register every mmscalenet module of mmdet's registries into ``package``'s registries of the same names (the
    backbones accepting ``pretrained=``); False where the package is not installed."""
    import importlib

    import mmdet.registry as det
    try:
        other = importlib.import_module(f'{package}.registry')
    except ImportError:
        return False
    for name in MIRRORED:
        src, dst = getattr(det, name), getattr(other, name, None)
        if dst is None:
            continue
        for key, obj in list(src.module_dict.items()):
            if not getattr(obj, '__module__', '').startswith('mmscalenet') or key in dst.module_dict:
                continue
            if name == 'MODELS' and key in ('ScaleNetViT', 'ScaleNetSwin'):
                obj = accepting_pretrained(obj)
            dst.register_module(name=key, module=obj)
    return True


for _package in OTHER_PACKAGES:
    mirror_registrations(_package)


def _scope_registries() -> dict:
    """One registry per mirrored kind with scope ``'mmscalenet'``, a child of mmdet's: mmengine tags everything a
    config inherits through ``_base_ = 'mmscalenet::...'`` with ``_scope_='mmscalenet'`` and builds it from the
    registry of that scope, which then finds mmscalenet's (and mmdet's) modules through its parent."""
    import mmdet.registry as det
    from mmengine.registry import Registry
    # locations: importing them registers everything (this module, and mmdet's modules its parent would import)
    return {name: Registry(getattr(det, name).name, parent=getattr(det, name), scope='mmscalenet',
                           locations=['mmscalenet.registry', *getattr(det, name)._locations])
            for name in MIRRORED}


SCOPE_REGISTRIES = _scope_registries()   # found by mmengine in the registry trees by their scope


def register_config_scheme() -> None:
    """Let mmengine resolve ``_base_ = 'mmscalenet::coco/CONFIG.py'`` (the package's ``.mim/configs``): this
    package's entry in mmengine's ``PACKAGE::`` table and a lookup that finds ``.mim`` for every way the package is
    present (``_mmscalenet_config_scheme.patch``; the install's ``.pth`` does the same for programs that never
    import mmscalenet before reading a config, such as mmdet's own tools)."""
    import _mmscalenet_config_scheme
    _mmscalenet_config_scheme.patch()


register_config_scheme()
_register_mmengine_globals()
count_attention_in_mmengine()
