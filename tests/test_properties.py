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
