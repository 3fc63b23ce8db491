"""timm's model interface of the grown ViT and Swin: what timm's own ``tests/test_models.py`` checks, as tests here,
plus a runner of timm's file itself.

timm's own suite, only the model list narrowed to this package's names (nothing is fetched; give the file of a
timm checkout of the installed version)::

    MMSCALENET_TIMM_TESTS=/path/to/pytorch-image-models/tests/test_models.py \\
        python -m pytest -q tests/test_timm_suite.py -k timm_own_suite

The runner copies the file to a temporary folder and adapts its model lists the way timm lists its own families:
``scalenet_deit*`` joins ``NON_STD_FILTERS`` (as timm's ``deit*`` / ``vit_*``: token features, no NCHW map), and
this package's model module joins ``FEAT_INTER_FILTERS`` (families with ``forward_intermediates``); then it runs
pytest on it with ``-k scalenet`` after ``import mmscalenet.models.timm_models`` (a conftest).
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip('timm')
import mmscalenet.models.timm_models  # noqa: E402,F401  (registers the models)
from mmscalenet.models.swin import ScaleNetSwin  # noqa: E402
from mmscalenet.models.vit import ScaleNetViT  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {'scalenet_deit_tiny_patch16_224_d24': dict(arch=dict(embed_dims=64, num_layers=4, num_heads=4), depth=6),
         'scalenet_swin_tiny_patch4_window7_224_d24': dict(
             arch=dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)), depths=(2, 2, 4, 2))}


def _randomize_adapters(model):
    """Non-zero adapter up-projections, so the adapters change every output (zero-initialised by design)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.up.' in name or 'lora_B' in name or 'gate' in name:
                p.normal_(0, 0.02)
    return model


@pytest.mark.parametrize('name', list(SMALL))
def test_registered_names_and_default_cfg(name):
    assert name in timm.list_models('scalenet*')
    assert timm.list_models('*scalenet*swin*') == ['scalenet_swin_tiny_patch4_window7_224_d24']
    model = timm.create_model(name, **SMALL[name]).eval()
    cfg = model.default_cfg
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    pre = model.forward_head(feats, pre_logits=True)
    assert model.head_hidden_size > 0 and pre.shape == (1, model.head_hidden_size)
    assert model.num_features == model.head_hidden_size and isinstance(model.num_features, int)
    assert cfg['pool_size'] == ((14, 14) if 'deit' in name else (7, 7))
    model.reset_classifier(0, '')   # no head, no pooling: the unpooled features
    out = model(x)
    assert out.shape == feats.shape and torch.allclose(out, feats)
    for part in (cfg['first_conv'], cfg['classifier']):
        assert part + '.weight' in timm.create_model(name, **SMALL[name]).state_dict()


def test_swin_unpooled_map_matches_pool_size_and_nhwc():
    name = 'scalenet_swin_tiny_patch4_window7_224_d24'
    model = timm.create_model(name, num_classes=0, global_pool='', **SMALL[name]).eval()
    assert model.output_fmt == 'NHWC'
    out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 7, 7, model.num_features)


@pytest.mark.parametrize('name', list(SMALL))
def test_features_only_and_forward_intermediates(name):
    model = timm.create_model(name, features_only=True, **SMALL[name]).eval()
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    assert len(outs) == len(model.feature_info.channels()) >= 3
    for c, r, o in zip(model.feature_info.channels(), model.feature_info.reduction(), outs):
        assert o.shape == (2, c, -(-64 // r), -(-64 // r))
    full = timm.create_model(name, **SMALL[name]).eval()
    final, inter = full.forward_intermediates(x)
    assert len(inter) == len(full.feature_info) and torch.allclose(final, full.forward_features(x))
    last = full.get_intermediate_layers(x, n=2, reshape=True)
    assert len(last) == 2 and torch.allclose(last[-1], inter[-1])


def test_vit_intermediates_formats_and_prefix_tokens():
    model = timm.create_model('scalenet_deit_tiny_patch16_224_d24', **SMALL['scalenet_deit_tiny_patch16_224_d24'])
    x = torch.randn(1, 3, 48, 32)
    nlc = model.forward_intermediates(x, indices=[0, -1], output_fmt='NLC', intermediates_only=True,
                                      return_prefix_tokens=True)
    (tokens, prefix) = nlc[1]
    assert tokens.shape == (1, 6, 64) and prefix.shape == (1, 1, 64)
    out = model.forward_intermediates(x, indices=1, output_dict=True, norm=True)
    assert torch.allclose(out['image_features'], model.forward_features(x))
    with pytest.raises(ValueError, match='attn_mask'):
        model.forward_intermediates(x, attn_mask=torch.ones(1))


@pytest.mark.parametrize('name', list(SMALL))
def test_torchscript_mirror_computes_the_model(name):
    model = _randomize_adapters(timm.create_model(name, **SMALL[name])).eval()
    x = torch.randn(2, 3, 72, 56)   # not the pretraining size: pos-embed resampling / padded windows in the graph
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
    assert isinstance(model.positions if hasattr(model, 'positions') else model.layers, torch.nn.ModuleList)


@pytest.mark.parametrize('kw', [dict(adapter=dict(type='LoRA', rank=2), function_preserving=True),
                                dict(adapter=None, unshared=('norm',)),
                                dict(out_type='featmap', out_indices=(1, 3), window_size=2, use_rel_pos=True,
                                     global_indices=(3,))])
def test_torchscript_vit_backbone_every_option(kw):
    model = _randomize_adapters(ScaleNetViT(dict(embed_dims=32, num_layers=2, num_heads=2), depth=4, img_size=32,
                                            patch_size=8, **kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'rel_pos' in name:
                p.normal_(0, 0.1)
    x = torch.randn(1, 3, 40, 24)
    for a, b in zip(torch.jit.script(model)(x), model(x)):
        assert torch.allclose(a, b, atol=1e-5)


def test_torchscript_swin_backbone_trains_the_same_tensors():
    model = _randomize_adapters(ScaleNetSwin(arch=SMALL['scalenet_swin_tiny_patch4_window7_224_d24']['arch'],
                                             depths=(2, 2, 3, 2), img_size=64)).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 50, 70)
    for a, b in zip(scripted(x), model(x)):
        assert torch.allclose(a, b, atol=1e-5)
    sum(o.sum() for o in scripted(x)).backward()
    shared = model.layers[2].blocks[0].attn.qkv.weight
    assert shared.grad is not None and shared.grad.abs().sum() > 0


def _fx(model, train=False):
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    kw = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
              param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kw)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kw)


@pytest.mark.parametrize('name', list(SMALL))
def test_fx_graph_equals_model_and_scripts(name):
    model = _randomize_adapters(timm.create_model(name, **SMALL[name])).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        graph = _fx(model)
        out = model(x)
        assert torch.equal(next(iter(graph(x).values())), out)   # the fused kernels' own arithmetic, traced
        assert torch.allclose(next(iter(torch.jit.script(graph)(x).values())), out, atol=1e-5)


def test_fx_backward_reaches_every_parameter():
    name = 'scalenet_deit_tiny_patch16_224_d24'
    model = timm.create_model(name, num_classes=7, **SMALL[name]).train()
    graph = _fx(model, train=True)
    next(iter(graph(torch.randn(2, 3, 32, 32)).values())).mean().backward()
    assert all(p.grad is not None for p in graph.parameters())


def test_timm_kwargs_drop_rate_dynamic_img_size_group_matcher():
    name = 'scalenet_deit_tiny_patch16_224_d24'
    model = timm.create_model(name, drop_rate=0.5, dynamic_img_size=True, **SMALL[name])
    assert model.head_drop.p == 0.5 and model.dynamic_img_size
    model.eval()
    assert model(torch.randn(1, 3, 40, 72)).shape == (1, 1000)
    from timm.models import group_parameters
    groups = group_parameters(model, model.group_matcher())
    # the shared block j joins the group of position j (its first user in the cyclic plan), not a later one
    of = {n: g for g, names in groups.items() for n in names}
    assert of['blocks.1.attn.qkv.weight'] == of['positions.1.adapter_attn.down.weight']
    assert of['blocks.1.attn.qkv.weight'] != of['positions.5.adapter_attn.down.weight']
    swin = timm.create_model('scalenet_swin_tiny_patch4_window7_224_d24',
                             **SMALL['scalenet_swin_tiny_patch4_window7_224_d24'])
    sgroups = group_parameters(swin, swin.group_matcher())
    sof = {n: g for g, names in sgroups.items() for n in names}
    assert sof['layers.2.blocks.1.attn.qkv.weight'] == sof['layers.2.positions.1.adapter_attn.down.weight']
    assert sof['layers.2.blocks.1.attn.qkv.weight'] != sof['layers.2.positions.3.adapter_attn.down.weight']


def _adapted_timm_suite(src: str, dst: str) -> None:
    text = open(src).read()
    for old, new in (('NON_STD_FILTERS = [', "NON_STD_FILTERS = ['scalenet_deit*', "),
                     ('FEAT_INTER_FILTERS = [', "FEAT_INTER_FILTERS = ['timm_models', ")):
        assert text.count(old) == 1, f'{src}: expected one {old!r}'
        text = text.replace(old, new)
    with open(dst, 'w') as f:
        f.write(text)


@pytest.mark.skipif(not os.environ.get('MMSCALENET_TIMM_TESTS'), reason='set MMSCALENET_TIMM_TESTS to timm\'s '
                    'tests/test_models.py to run timm\'s own suite on the scalenet models')
def test_timm_own_suite(tmp_path):
    _adapted_timm_suite(os.environ['MMSCALENET_TIMM_TESTS'], str(tmp_path / 'test_models.py'))
    (tmp_path / 'conftest.py').write_text('import mmscalenet.models.timm_models  # noqa: F401\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-k', 'scalenet',
                           '--rootdir', str(tmp_path), str(tmp_path / 'test_models.py')],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    print(tail)   # the counts (pytest -s shows them)
    assert proc.returncode == 0, tail
    assert ' passed' in tail and 'failed' not in tail, tail
    shutil.rmtree(tmp_path, ignore_errors=True)
