"""Depth plans, state-dict expansion and parameter accounting (pure torch)."""
import pytest
import torch

from mmscalenet.expansion import (count_parameters, expand_state_dict, make_depth_plan, spread_indices,
                                  untie_state_dict)


def test_cyclic_plan_keeps_originals_then_repeats():
    plan = make_depth_plan(4, 10, 'cyclic')
    assert plan.sources == (0, 1, 2, 3, 0, 1, 2, 3, 0, 1)
    assert plan.original_positions == (0, 1, 2, 3)
    assert plan.inserted == (False,) * 4 + (True,) * 6
    assert plan.positions_of(1) == (1, 5, 9)


def test_interleave_plan_repeats_in_place():
    plan = make_depth_plan(3, 6, 'interleave')
    assert plan.sources == (0, 0, 1, 1, 2, 2)
    assert plan.original_positions == (0, 2, 4)
    assert make_depth_plan(4, 5, 'interleave').sources == (0, 0, 1, 2, 3)


def test_explicit_plan_and_default_depth():
    plan = make_depth_plan(2, mapping=[1, 0, 1])
    assert plan.depth == 3 and plan.original_positions == (1, 0)
    assert make_depth_plan(5).sources == (0, 1, 2, 3, 4)
    assert 'position   4 <- base layer   0  (inserted)' in make_depth_plan(4, 8).describe()


@pytest.mark.parametrize('kwargs, match', [
    (dict(base_depth=4, depth=3), 'smaller than the base depth'),
    (dict(base_depth=4, depth=5, mapping=[0, 1, 2, 3]), 'has 4 entries but depth D=5'),
    (dict(base_depth=4, depth=5, mapping=[0, 1, 2, 3, 4]), r'out of range'),
    (dict(base_depth=4, depth=5, mapping=[0, 1, 2, 2, 2]), r'never uses base layers \[3\]'),
    (dict(base_depth=4, depth=5, mapping='spiral'), 'unknown mapping'),
    (dict(base_depth=0, depth=5), 'positive integer'),
])
def test_bad_plans_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_depth_plan(**kwargs)


def test_bad_plan_types():
    with pytest.raises(TypeError):
        make_depth_plan(4, 4.5)
    with pytest.raises(TypeError):
        make_depth_plan(2, 2, ['a', 'b'])


def test_spread_indices_end_at_last_position():
    assert spread_indices(12, 4) == (2, 5, 8, 11)
    assert spread_indices(24, 4) == (5, 11, 17, 23)
    assert spread_indices(3, 4) == (0, 1, 2)
    assert spread_indices(8, 0) == ()


def test_expand_state_dict_stores_shared_once_and_copies_unshared_norms():
    base = {'pos_embed': torch.zeros(1, 5, 2)}
    for j in range(2):
        base[f'blocks.{j}.attn.qkv.weight'] = torch.full((6, 2), float(j))
        base[f'blocks.{j}.norm1.weight'] = torch.full((2,), float(j))
    plan = make_depth_plan(2, 4, 'cyclic')
    shared, report = expand_state_dict(base, plan)
    assert shared.keys() == base.keys()
    assert all(shared[k] is base[k] for k in base)          # nothing copied when everything is shared
    own, report = expand_state_dict(base, plan, unshared=('norm',))
    assert 'blocks.0.norm1.weight' not in own
    assert [k for k in own if k.startswith('positions.')] == [
        'positions.0.norm1.weight', 'positions.2.norm1.weight', 'positions.1.norm1.weight', 'positions.3.norm1.weight']
    assert torch.equal(own['positions.3.norm1.weight'], base['blocks.1.norm1.weight'])
    assert report == {'copied': ['positions.0.norm1.weight', 'positions.2.norm1.weight', 'positions.1.norm1.weight',
                                 'positions.3.norm1.weight']}
    deeper, _ = expand_state_dict(dict(base, **{'blocks.2.norm1.weight': torch.ones(2)}), plan)
    assert deeper.keys() == base.keys()                     # layers beyond the plan's base depth are left out
    with pytest.raises(ValueError, match='unshared'):
        expand_state_dict(base, plan, unshared=('qkv',))


def test_untie_state_dict_gives_one_block_per_position():
    plan = make_depth_plan(2, 3, [0, 1, 0])
    state = {'blocks.0.w': torch.tensor([0.]), 'blocks.1.w': torch.tensor([1.]),
             'positions.2.norm1.weight': torch.tensor([2.]), 'norm.weight': torch.tensor([3.])}
    out = untie_state_dict(state, plan)
    assert sorted(out) == ['blocks.0.w', 'blocks.1.w', 'blocks.2.norm1.weight', 'blocks.2.w', 'norm.weight']
    assert out['blocks.2.w'].item() == 0.0 and out['blocks.2.w'].data_ptr() != state['blocks.0.w'].data_ptr()


def test_count_parameters_splits_shared_and_per_position():
    from mmscalenet.models import ScaleNetViT
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0)
    model = ScaleNetViT(arch, depth=4, adapter=dict(type='ParallelAdapter', bottleneck=4), img_size=32,
                        patch_size=8)
    counts = count_parameters(model)
    total = sum(p.numel() for p in model.parameters())
    assert counts['unique'] == total
    assert counts['shared'] + counts['per_position'] + counts['other'] == total
    block = sum(p.numel() for p in model.blocks[0].parameters())
    assert counts['shared'] == 2 * block
    assert counts['untied'] == total + 2 * block             # two inserted positions re-use a block each
    adapter = 2 * (32 * 4 + 4 + 4 * 32 + 32)
    assert counts['per_position'] == 4 * adapter
