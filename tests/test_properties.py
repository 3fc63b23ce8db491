"""Property-based: random depths, mappings, image / window / patch sizes. Building and running the backbone either
works (with the documented output shapes) or raises a clear ValueError / TypeError, never anything else."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmscalenet.models import ScaleNetViT

small_int = st.integers(min_value=-2, max_value=9)
mapping = st.one_of(st.sampled_from(['cyclic', 'interleave', 'bogus']),
                    st.lists(st.integers(min_value=-1, max_value=4), max_size=9),
                    st.lists(st.sampled_from([0, 1, 1.0, 1.5, True, None, 'a']), min_size=1, max_size=4))
adapter = st.one_of(st.none(),
                    st.fixed_dictionaries({'type': st.just('ParallelAdapter'), 'bottleneck': st.integers(-1, 4),
                                           'sites': st.sampled_from([('attn', 'mlp'), 'mlp', ('attn',), ()])}),
                    st.fixed_dictionaries({'type': st.just('LoRA'), 'rank': st.integers(0, 3),
                                           'targets': st.sampled_from([('qkv',), ('fc1', 'fc2'), 'proj'])}),
                    st.just({'type': 'Bogus'}))
indices = st.one_of(st.none(), st.lists(st.integers(min_value=-9, max_value=9), max_size=3))

CASES = dict(
    num_layers=st.integers(min_value=0, max_value=4),
    num_heads=st.sampled_from([1, 2, 3]),
    depth=st.one_of(st.none(), small_int),
    mapping=mapping,
    adapter=adapter,
    function_preserving=st.booleans(),
    unshared=st.sampled_from([(), ('norm',), 'norm', ('bogus',)]),
    img_size=st.one_of(st.integers(min_value=-1, max_value=40), st.tuples(st.integers(1, 40), st.integers(1, 40))),
    patch_size=st.integers(min_value=1, max_value=9),   # 0 / negative: see the test below
    drop_path_rate=st.sampled_from([0.0, 0.1, -0.1, 1.0]),
    out_type=st.sampled_from(['cls_token', 'featmap', 'bogus']),
    out_indices=indices,
    window_size=small_int,
    global_indices=indices,
    use_rel_pos=st.booleans(),
    with_cp=st.booleans(),
    height=st.integers(min_value=1, max_value=40),
    width=st.integers(min_value=1, max_value=40),
    train=st.booleans(),
)


def _clear(err):
    assert isinstance(err, (ValueError, TypeError)), f'{type(err).__name__}: {err}'
    assert len(str(err)) > 10, f'unclear message: {err!r}'


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(**CASES)
def test_build_and_run_works_or_raises_clear_error(num_layers, num_heads, depth, mapping, adapter,
                                                   function_preserving, unshared, img_size, patch_size,
                                                   drop_path_rate, out_type, out_indices, window_size,
                                                   global_indices, use_rel_pos, with_cp, height, width, train):
    arch = dict(embed_dims=12, num_layers=num_layers, num_heads=num_heads, mlp_ratio=2.0)
    try:
        model = ScaleNetViT(arch, depth=depth, mapping=mapping, adapter=adapter,
                            function_preserving=function_preserving, unshared=unshared, img_size=img_size,
                            patch_size=patch_size, drop_path_rate=drop_path_rate, out_type=out_type,
                            out_indices=out_indices, window_size=window_size, global_indices=global_indices,
                            use_rel_pos=use_rel_pos, with_cp=with_cp)
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions
        _clear(err)
        return
    model.train(train)
    x = torch.randn(2, 3, height, width, requires_grad=train)
    try:
        outs = model(x)
    except Exception as err:  # noqa: BLE001
        _clear(err)
        return
    assert isinstance(outs, tuple) and outs
    ps = model.patch_size
    if model.out_type == 'cls_token':
        assert len(outs) == 1 and outs[0].shape == (2, 12)
    else:
        assert len(outs) == len(set(model.out_indices))
        for out in outs:
            assert out.shape == (2, 12, math.ceil(height / ps), math.ceil(width / ps))
    assert all(torch.isfinite(o).all() for o in outs)
    if train:
        sum(o.sum() for o in outs).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize('kw', [
    dict(img_size=(0, 8)), dict(img_size=8, patch_size=16), dict(img_size=(8, 8, 8)), dict(depth=2),
    dict(depth=3.0), dict(mapping=[0, 0, 0, 0]), dict(mapping=[0, 1, 5]), dict(mapping='bogus'),
    dict(window_size=-1), dict(window_size=2.0, out_type='featmap'), dict(out_type='bogus'),
    dict(drop_path_rate=1.0), dict(adapter=dict(type='LoRA', rank=0)), dict(unshared=('bogus',)),
    dict(out_indices=[9], out_type='featmap'), dict(global_indices=[-9], out_type='featmap', window_size=2),
])
def test_specific_bad_arguments_are_value_or_type_errors(kw):
    arch = dict(embed_dims=12, num_layers=3, num_heads=2)
    with pytest.raises((ValueError, TypeError)):
        ScaleNetViT(arch, **{'img_size': 16, 'patch_size': 4, **kw})


@pytest.mark.parametrize('kw', [dict(patch_size=0), dict(patch_size=-1), dict(in_channels=0)])
def test_patch_size_and_channels_validated(kw):
    arch = dict(embed_dims=12, num_layers=3, num_heads=2)
    try:
        model = ScaleNetViT(arch, **{'img_size': 16, 'patch_size': 4, **kw})
        model(torch.randn(1, 3, 16, 16))
    except (ValueError, TypeError):
        return
    raise AssertionError('no error')


# ---- widened: embed_dims, mlp_ratio, adapter scale / alpha, 0-size inputs -------------------------------------------
real = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 5),
                 st.sampled_from([True, '2.0', None]))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(embed_dims=st.one_of(st.integers(-2, 24), st.sampled_from([8.0, True, '8'])), mlp_ratio=real,
       kind=st.sampled_from(['ParallelAdapter', 'LoRA']), factor=real, height=st.integers(0, 9),
       width=st.integers(0, 9), batch=st.integers(0, 2))
def test_widths_ratios_adapter_factors_and_empty_inputs(embed_dims, mlp_ratio, kind, factor, height, width, batch):
    """Any width / MLP ratio / adapter factor either builds a model whose outputs are finite, or is refused with a
    ValueError / TypeError naming the argument; an image with H or W = 0 is refused at forward."""
    key = 'scale' if kind == 'ParallelAdapter' else 'alpha'
    adapter = {'type': kind, key: factor}
    try:
        model = ScaleNetViT(dict(embed_dims=embed_dims, num_layers=2, num_heads=1, mlp_ratio=mlp_ratio), depth=3,
                            adapter=adapter, img_size=8, patch_size=4)
    except (ValueError, TypeError) as err:
        text = str(err)
        assert any(name in text for name in ('embed_dims', 'mlp_ratio', key, 'arch')), text
        return
    assert math.isfinite(float(mlp_ratio)) and math.isfinite(float(factor)) and int(embed_dims * mlp_ratio) >= 1
    with torch.no_grad():   # non-zero up-projections so the adapter factor reaches the output
        for name, p in model.named_parameters():
            if name.endswith(('up.weight', 'lora_B')):
                p.fill_(0.01)
    x = torch.randn(batch, 3, height, width)
    if height == 0 or width == 0:
        with pytest.raises(ValueError, match='size 0'):
            model(x)
        return
    out = model(x)[0]
    assert out.shape == (batch, embed_dims) and torch.isfinite(out).all()


@pytest.mark.parametrize('kw, name', [
    (dict(arch=dict(embed_dims=12, num_layers=3, num_heads=2, mlp_ratio=0)), 'mlp_ratio'),
    (dict(arch=dict(embed_dims=12, num_layers=3, num_heads=2, mlp_ratio=-1.0)), 'mlp_ratio'),
    (dict(arch=dict(embed_dims=12, num_layers=3, num_heads=2, mlp_ratio=float('inf'))), 'mlp_ratio'),
    (dict(arch=dict(embed_dims=12, num_layers=3, num_heads=2, mlp_ratio=float('nan'))), 'mlp_ratio'),
    (dict(adapter=dict(type='ParallelAdapter', scale=float('nan'))), 'ParallelAdapter.scale'),
    (dict(adapter=dict(type='ParallelAdapter', scale=float('inf'))), 'ParallelAdapter.scale'),
    (dict(adapter=dict(type='LoRA', alpha=float('nan'))), 'LoRA.alpha'),
    (dict(adapter=dict(type='LoRA', alpha=-float('inf'))), 'LoRA.alpha'),
    (dict(out_type='featmap', out_indices=[1.5]), 'out_indices'),
    (dict(out_type='featmap', window_size=2, global_indices=[0.0]), 'global_indices'),
    (dict(out_type='featmap', window_size=True), 'window_size'),
])
def test_issue_11_validation_gaps_are_one_line_value_errors(kw, name):
    kw = {'arch': dict(embed_dims=12, num_layers=3, num_heads=2), 'img_size': 16, 'patch_size': 4, **kw}
    with pytest.raises(ValueError) as err:
        ScaleNetViT(kw.pop('arch'), **kw)
    assert name in str(err.value) and '\n' not in str(err.value)


# ---- checkpoint metadata: random well-formed files round-trip, random malformed ones give a CheckpointError -----
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(heads=st.sampled_from([1, 2, 4]), per_head=st.integers(1, 4), layers=st.integers(1, 3),
       extra=st.integers(0, 3), ratio=st.sampled_from([1.0, 1.5, 2.5]),
       adapter=st.sampled_from([None, dict(type='ParallelAdapter', bottleneck=2, scale=0.5),
                                dict(type='LoRA', rank=1, alpha=3.0)]),
       fp=st.booleans(), img=st.tuples(st.integers(4, 12), st.integers(4, 12)),
       suffix=st.sampled_from(['.pth', '.safetensors']))
def test_random_well_formed_checkpoints_round_trip(tmp_path_factory, heads, per_head, layers, extra, ratio,
                                                   adapter, fp, img, suffix):
    from mmscalenet.checkpoint import load_scalenet, save_scalenet
    arch = dict(embed_dims=heads * per_head, num_layers=layers, num_heads=heads, mlp_ratio=ratio)
    model = ScaleNetViT(arch, depth=layers + extra, adapter=adapter, function_preserving=fp, img_size=img,
                        patch_size=4)
    path = str(tmp_path_factory.mktemp('meta') / f'm{suffix}')
    save_scalenet(model, path)
    loaded, _ = load_scalenet(path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 2 ** 40), st.floats(allow_nan=True),
                    st.text(max_size=3), st.lists(st.integers(-1, 5), max_size=3), st.just({'x': 1}))
_FIELDS = ['arch', 'arch.embed_dims', 'arch.num_layers', 'arch.num_heads', 'arch.mlp_ratio', 'sources', 'img_size',
           'patch_size', 'in_channels', 'adapter', 'adapter.bottleneck', 'adapter.scale', 'base_depth',
           'window_size', 'out_type', 'out_indices', 'unshared', 'drop_path_rate', 'function_preserving']


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), value=_VALUES, delete=st.booleans())
def test_random_malformed_metadata_gives_checkpoint_error(tmp_path_factory, field, value, delete):
    """Any change of one metadata field either still describes the file's tensors (and loads them exactly) or is
    refused with one CheckpointError naming the file; never another exception, never a huge allocation."""
    import copy

    from mmscalenet.checkpoint import CheckpointError, load_scalenet, scalenet_meta
    model = _META_MODEL
    meta = copy.deepcopy(scalenet_meta(model))
    node, parts = meta, field.split('.')
    for part in parts[:-1]:
        node = node[part]
    if delete:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    path = str(tmp_path_factory.mktemp('bad') / 'm.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'scalenet': meta}}, path)
    try:
        loaded, _ = load_scalenet(path)
    except CheckpointError as err:
        assert path in str(err) and '\n' not in str(err), str(err)
        return
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


_META_MODEL = ScaleNetViT(dict(embed_dims=8, num_layers=2, num_heads=2, mlp_ratio=2.0), depth=3,
                          adapter=dict(type='ParallelAdapter', bottleneck=2), img_size=8, patch_size=4)
