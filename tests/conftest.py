"""Shared test fixtures: tiny architectures and locally made timm checkpoints (no downloads)."""
import itertools
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def config_lrs(cfg, build, **paramwise):
    """``({tensor name: lr}, model)`` under ``cfg.optim_wrapper`` (its paramwise_cfg updated with ``paramwise``, a
    plain OptimWrapper) for the model ``build(cfg)`` makes on the meta device, with the backbone's init_cfg off:
    what a shipped config's optimizer gives every tensor, without weights or a GPU."""
    from mmengine.optim import build_optim_wrapper
    cfg.model.backbone.init_cfg = None
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.paramwise_cfg.update(paramwise)
    with torch.device('meta'):
        model = build(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    return {name: group['lr'] for group in optim.param_groups for name in group['param_names']}, model


def tool_main(name):
    """``main`` of ``tools/<name>.py``, loaded in this process (each call a fresh module; ``tools/`` is on the path
    while it loads, for the tools that import a sibling)."""
    import importlib.util
    tools = os.path.join(ROOT, 'tools')
    spec = importlib.util.spec_from_file_location(f'mmscalenet_tool_{name}', os.path.join(tools, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, tools)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(tools)
    return module.main


def randomised(model, std=0.1, seed=0):
    """Every tensor of ``model`` random (zero-initialised adapters, LoRA factors and gates too), so that a wrong
    graph or a lost tensor changes the output; returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


# A 4-layer ViT small enough for CPU tests in milliseconds.
TINY_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0)


def timm_vit(depth=4, embed_dim=64, num_heads=4, mlp_ratio=2.0, img_size=32, patch_size=8, num_classes=10,
             seed=0):
    """A timm VisionTransformer in DeiT layout with random (seeded) weights."""
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                              num_heads=num_heads, mlp_ratio=mlp_ratio, num_classes=num_classes)
    # non-trivial norms and biases, so that sharing mistakes show up in outputs
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name or name.endswith('bias'):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture
def tiny_timm():
    return timm_vit()


_scope_ids = itertools.count()


@pytest.fixture
def mmdet_scope():
    """mmcv's build_norm_layer looks custom norms up in the current default scope."""
    from mmengine.registry import DefaultScope
    import mmscalenet  # noqa: F401
    name = f'mmscalenet-test-{os.getpid()}-{next(_scope_ids)}'
    scope = DefaultScope.get_instance(name, scope_name='mmdet')
    yield scope
