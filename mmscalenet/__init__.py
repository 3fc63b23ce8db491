"""mmscalenet: ScaleNet for OpenMMLab.

``import mmscalenet`` registers every component into mmdet's registries (configs use ``default_scope='mmdet'`` and
``custom_imports=dict(imports=['mmscalenet'])``). The method itself (``mmscalenet.expansion``,
``mmscalenet.models.ScaleNetViT``, ``mmscalenet.checkpoint``) needs only torch, so it also works where OpenMMLab is
not installed; then nothing is registered.
"""
__version__ = '0.1.0'

# The composition root: the backbones (mmscalenet.models, which never import the checkpoint package) receive their
# loader here, before any submodule of this package can be used; one function for both families.
from .checkpoint.load import load_backbone as _load_backbone  # noqa: E402
from .models.swin import ScaleNetSwin as _ScaleNetSwin  # noqa: E402
from .models.vit import ScaleNetViT as _ScaleNetViT  # noqa: E402

_ScaleNetViT.pretrained_loader = _ScaleNetSwin.pretrained_loader = staticmethod(_load_backbone)

try:
    import mmdet  # noqa: F401  (mmdet pulls mmengine and mmcv)
except ImportError:  # torch-only use: benchmarks, export, expansion
    pass
else:
    from . import registry  # noqa: F401,E402

try:  # timm.create_model('scalenet_deit_small_patch16_224_d24', ...) after `import mmscalenet`
    from .models import timm_models  # noqa: F401,E402
except ImportError:  # torch-only use
    pass
