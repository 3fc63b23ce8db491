"""ScaleNetViT: timm parity, expansion equivalence, weight sharing, shapes, errors."""
import copy
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_ARCH, timm_vit
from mmscalenet.checkpoint import CheckpointError
from mmscalenet.expansion import count_parameters
from mmscalenet.models import ScaleNetViT
from mmscalenet.models.adapters import ParallelAdapter


def _pre_logits(timm_model, x):
    return timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)


def _untied_timm(base, plan):
    """A timm ViT of depth D whose block p is a copy of base block g(p)."""
    deep = timm_vit(depth=plan.depth, seed=1)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith('blocks.')}
    for p, j in enumerate(plan.sources):
        for k, v in base.blocks[j].state_dict().items():
            state[f'blocks.{p}.{k}'] = v
    deep.load_state_dict(state)
    return deep.eval()


def _tiny(**kw):
    kw.setdefault('img_size', 32)
    kw.setdefault('patch_size', 8)
    return ScaleNetViT(TINY_ARCH, **kw).eval()


def _fused_with_random_positions(depth, adapter):
    """A featmap model in train mode whose per-position parameters are non-zero (so adapters do something)."""
    torch.manual_seed(0)
    model = _tiny(depth=depth, adapter=adapter, out_type='featmap', window_size=2, use_rel_pos=True).train()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'positions' in n:
                p.normal_(std=0.05)
    return model


def test_deit_tiny_parity_with_timm(tmp_path):
    import timm
    torch.manual_seed(0)
    ref = timm.create_model('deit_tiny_patch16_224', pretrained=False).eval()
    path = tmp_path / 'deit_tiny.pth'
    torch.save({'model': ref.state_dict()}, path)      # the official DeiT file layout
    model = ScaleNetViT('deit-tiny', adapter=None, init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    model.init_weights()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, tuple) and out[0].shape == (2, 192)
    assert (out[0] - _pre_logits(ref, x)).abs().max() < 1e-5


@pytest.mark.parametrize('mapping', ['cyclic', 'interleave'])
@pytest.mark.parametrize('adapter', [dict(type='ParallelAdapter', bottleneck=8), dict(type='LoRA', rank=4)])
def test_grown_model_equals_untied_timm_copy(tiny_timm, mapping, adapter):
    model = _tiny(depth=8, mapping=mapping, adapter=adapter)
    model.load_pretrained(tiny_timm.state_dict())
    deep = _untied_timm(tiny_timm, model.plan)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (model(x)[0] - _pre_logits(deep, x)).abs().max() < 1e-5


def test_function_preserving_growth_equals_base(tiny_timm):
    model = _tiny(depth=12, function_preserving=True)
    model.load_pretrained(tiny_timm.state_dict())
    # perturb every inserted position's shared-weight *use* through its adapter: gates must still hide it
    with torch.no_grad():
        for pos in model.positions:
            if pos.gate_attn is not None:
                pos.adapter_attn.up.weight.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x)[0] - _pre_logits(tiny_timm, x)).abs().max() < 1e-5
    assert sum(p.gate_attn is not None for p in model.positions) == 8      # only inserted positions are gated


def test_shared_tensors_stored_once():
    model = _tiny(depth=8)
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names)) == len(list(model.parameters()))
    qkv = [k for k in model.state_dict() if k.endswith('attn.qkv.weight')]
    assert qkv == [f'blocks.{j}.attn.qkv.weight' for j in range(4)]
    ptrs = [p.data_ptr() for p in model.parameters()]
    assert len(ptrs) == len(set(ptrs))


def test_shared_gradient_is_sum_of_untied_gradients():
    torch.manual_seed(0)
    adapter = dict(type='ParallelAdapter', bottleneck=4)
    grown = ScaleNetViT(TINY_ARCH, depth=8, adapter=adapter, unshared=('norm',), img_size=32, patch_size=8)
    with torch.no_grad():  # make positions differ, so a wrong tie would change gradients
        for n, p in grown.named_parameters():
            if 'adapter' in n or 'norm' in n:
                p.add_(torch.randn_like(p) * 0.1)
    arch8 = dict(TINY_ARCH, num_layers=8)
    untied = ScaleNetViT(arch8, depth=8, adapter=adapter, unshared=('norm',), img_size=32, patch_size=8)
    state = {}
    for k, v in grown.state_dict().items():
        if k.startswith('blocks.'):
            j, rest = int(k.split('.')[1]), k.split('.', 2)[2]
            for p in grown.plan.positions_of(j):
                state[f'blocks.{p}.{rest}'] = v.clone()
        else:
            state[k] = v.clone()
    untied.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    grown(x)[0].square().sum().backward()
    untied(x)[0].square().sum().backward()
    for j in range(4):
        for name in ('attn.qkv.weight', 'mlp.fc2.bias'):
            g_shared = grown.get_parameter(f'blocks.{j}.{name}').grad
            g_sum = sum(untied.get_parameter(f'blocks.{p}.{name}').grad for p in grown.plan.positions_of(j))
            assert torch.allclose(g_shared, g_sum, atol=1e-6, rtol=1e-4)


def test_deit_small_24_layers_costs_at_most_five_percent_more():
    import timm
    base = sum(p.numel() for p in timm.create_model('deit_small_patch16_224', pretrained=False,
                                                     num_classes=0).parameters())
    deep = sum(p.numel() for p in timm.create_model('deit_small_patch16_224', pretrained=False, num_classes=0,
                                                     depth=24).parameters())
    grown = count_parameters(ScaleNetViT('deit-small', depth=24))
    assert grown['unique'] <= 1.05 * base
    assert grown['unique'] <= 0.52 * deep        # the performance issue's parameter target
    assert grown['untied'] > 1.9 * base          # what an untied 24-layer model would cost


@pytest.mark.parametrize('size', [(32, 32), (37, 50), (9, 70)])
def test_featmap_shapes_any_input_size(size):
    model = _tiny(depth=6, out_type='featmap', out_indices=(1, 5), window_size=2, use_rel_pos=True)
    outs = model(torch.randn(2, 3, *size))
    expect = (2, 64, -(-size[0] // 8), -(-size[1] // 8))
    assert [tuple(o.shape) for o in outs] == [expect, expect]


def test_fused_adapters_match_reference_in_forward_and_gradients():
    for adapter in (dict(type='ParallelAdapter', bottleneck=8), dict(type='LoRA', rank=4)):
        fused = _fused_with_random_positions(8, adapter)
        ref = copy.deepcopy(fused).set_fused(False)
        x = torch.randn(2, 3, 40, 32)
        out_f, out_r = fused(x)[0], ref(x)[0]
        assert (out_f - out_r).abs().max() < 1e-5
        out_f.square().mean().backward()
        out_r.square().mean().backward()
        for (n, a), (_, b) in zip(fused.named_parameters(), ref.named_parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize('with_bias', [True, False])
def test_fused_adapter_helpers_pass_gradcheck(with_bias):
    """The hand-written backward of the fused adapter path, checked against finite differences in float64."""
    torch.manual_seed(0)
    adapter = ParallelAdapter(6, bottleneck=3, scale=0.5).double()
    with torch.no_grad():
        adapter.up.weight.normal_()
        adapter.up.bias.normal_()
    h = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True) if with_bias else None
    out_weight = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)

    def fused(h, weight, bias, out_weight, down_w, down_b, up_w, up_b):
        y, d = adapter.fused_in(h, SimpleNamespace(weight=weight, bias=bias))
        return adapter.fused_out(torch.tanh(y), SimpleNamespace(weight=out_weight, bias=None), d)
    params = (adapter.down.weight, adapter.down.bias, adapter.up.weight, adapter.up.bias)
    assert torch.autograd.gradcheck(fused, (h, weight, bias, out_weight) + params)
    # and it is the plain definition: linear, then the adapter branch beside it
    y, d = adapter.fused_in(h, SimpleNamespace(weight=weight, bias=bias))
    assert torch.allclose(y, torch.nn.functional.linear(h, weight, bias))
    assert torch.allclose(adapter.fused_out(torch.tanh(y), SimpleNamespace(weight=out_weight, bias=None), d),
                          torch.tanh(y) @ out_weight.t() + adapter.up(torch.relu(d)) * 0.5)


@pytest.mark.parametrize('adapter', [dict(type='ParallelAdapter'), dict(type='LoRA', rank=4), None])
def test_bf16_autocast_fused_path_is_as_accurate_as_reference(adapter):
    """AMP (the ImageNet configs' default) through the fused path: it runs, and its bf16 error against an fp32
    run is no larger than the reference path's own bf16 error."""
    fused = _fused_with_random_positions(4, adapter)
    ref, exact = copy.deepcopy(fused).set_fused(False), copy.deepcopy(fused).set_fused(False)
    x = torch.randn(2, 3, 32, 32)
    for model, amp in ((fused, True), (ref, True), (exact, False)):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            out = model(x)[0]
        out.float().square().mean().backward()
    for (n, a), (_, b), (_, c) in zip(fused.named_parameters(), ref.named_parameters(), exact.named_parameters()):
        assert a.grad is not None and a.grad.dtype == torch.float32, n
        err_fused = (a.grad - c.grad).norm() / c.grad.norm()
        err_ref = (b.grad - c.grad).norm() / c.grad.norm()
        assert err_fused <= 1.5 * err_ref + 0.01, (n, err_fused, err_ref)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    model = _tiny(depth=6).train()
    cp = copy.deepcopy(model)
    cp.with_cp = True
    x = torch.randn(2, 3, 32, 32)
    model(x)[0].sum().backward()
    cp(x)[0].sum().backward()
    for (n, a), (_, b) in zip(model.named_parameters(), cp.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), n


def test_drop_path_is_linear_over_grown_depth():
    model = _tiny(depth=8, drop_path_rate=0.7)
    rates = [p.drop_path for p in model.positions]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.7) < 1e-9
    assert all(abs((b - a) - 0.1) < 1e-9 for a, b in zip(rates, rates[1:]))


def test_window_and_global_positions_spread_over_depth():
    model = _tiny(depth=8, out_type='featmap', window_size=2)
    assert model.global_indices == (1, 3, 5, 7)
    assert [p.window_size for p in model.positions] == [2, 0] * 4


def test_unshared_norms_are_copied_from_source_layer(tiny_timm):
    model = _tiny(depth=8, unshared=('norm',))
    report = model.load_pretrained(tiny_timm.state_dict())
    assert model.blocks[0].norm1 is None
    assert torch.equal(model.positions[5].norm1.weight, tiny_timm.blocks[1].norm1.weight)
    assert len(report['expanded']) == 8 * 4 and not [k for k in report['new'] if 'norm' in k]


def test_loading_resizes_position_embedding(tiny_timm):
    model = ScaleNetViT(TINY_ARCH, img_size=48, patch_size=8, adapter=None)
    report = model.load_pretrained(tiny_timm.state_dict())
    assert model.pos_embed.shape == (1, 1 + 36, 64)
    assert report['resized'] == ['pos_embed 17 -> 37 tokens']


def test_loading_classifier_and_mmpretrain_layouts(tiny_timm):
    state = tiny_timm.state_dict()
    prefixed = {f'backbone.{k}': v for k, v in state.items() if not k.startswith('head')}
    prefixed.update({f'head.{k[5:]}': v for k, v in state.items() if k.startswith('head')})
    renamed = {}
    for k, v in state.items():
        k = k.replace('blocks.', 'layers.').replace('norm1', 'ln1').replace('norm2', 'ln2')
        k = k.replace('mlp.fc1', 'ffn.layers.0.0').replace('mlp.fc2', 'ffn.layers.1')
        k = k.replace('patch_embed.proj', 'patch_embed.projection')
        renamed['ln1' + k[4:] if k.startswith('norm.') else k] = v
    x = torch.randn(1, 3, 32, 32)
    for layout in (prefixed, {'state_dict': renamed}):
        model = _tiny(adapter=None)
        report = model.load_pretrained(layout)
        assert not report['new']
        with torch.no_grad():
            assert (model(x)[0] - _pre_logits(tiny_timm, x)).abs().max() < 1e-5


@pytest.mark.parametrize('kwargs, err, match', [
    (dict(depth=3), ValueError, 'smaller than the base depth'),
    (dict(depth=6, mapping=[0, 1, 2, 3]), ValueError, 'has 4 entries'),
    (dict(depth=5, mapping=[0, 1, 2, 3, 7]), ValueError, 'out of range'),
    (dict(adapter=dict(type='Prefix')), ValueError, "unknown adapter type 'Prefix'"),
    (dict(adapter=dict(type='LoRA', rnk=4)), TypeError, 'unknown arguments'),
    (dict(arch='deit-huge'), ValueError, 'unknown arch'),
    (dict(out_type='pooled'), ValueError, 'out_type'),
    (dict(window_size=4), ValueError, 'featmap'),
])
def test_bad_arguments_raise_clear_errors(kwargs, err, match):
    kwargs.setdefault('arch', TINY_ARCH)
    with pytest.raises(err, match=match):
        ScaleNetViT(**kwargs)


def test_checkpoint_errors_name_the_problem(tmp_path, tiny_timm):
    model = _tiny()
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        model.load_pretrained(str(tmp_path / 'missing.pth'))
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='corrupt.pth'):
        model.load_pretrained(str(corrupt))
    wide = timm_vit(embed_dim=96, num_heads=4)
    with pytest.raises(CheckpointError, match='width 96'):
        model.load_pretrained(wide.state_dict())
    deeper = timm_vit(depth=6)
    with pytest.raises(CheckpointError, match='6 base layers'):
        model.load_pretrained(deeper.state_dict())


@pytest.mark.parametrize('window, hw', [(3, (7, 5)), (0, (6, 4))])
def test_vitdet_position_equals_timm_sam_block(window, hw):
    """A featmap position (window attention with padding, or global attention with resized rel-pos tables) computes
    what timm's ViTDet-style SAM block computes on the same weights."""
    from functools import partial

    from timm.models.vision_transformer_sam import Block
    torch.manual_seed(0)
    model = _tiny(adapter=None, out_type='featmap', window_size=window or 2, global_indices=() if window else (0,),
                  use_rel_pos=True)
    model.positions[0].window_size = window or 0   # (only position 0 is compared)
    pos, block = model.positions[0], model.blocks[0]
    with torch.no_grad():
        for p in (pos.rel_pos_h, pos.rel_pos_w, *block.parameters()):
            p.normal_(std=0.3)
    table = window or max(model.grid)
    ref = Block(64, 4, mlp_ratio=2.0, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                window_size=window, input_size=(table, table)).eval()
    state = {k: v for k, v in block.state_dict().items()}
    state.update(rel_pos_h=pos.rel_pos_h, rel_pos_w=pos.rel_pos_w)
    state = {('attn.' + k if k.startswith('rel_pos') else k): v for k, v in state.items()}
    ref.load_state_dict(state)
    x = torch.randn(2, *hw, 64)
    with torch.no_grad():
        assert (pos(x, block) - ref(x)).abs().max() < 1e-5


def test_drop_path_keeps_or_drops_whole_samples_scaled():
    """Stochastic depth per sample (timm's drop_path): a branch is either dropped or scaled by 1 / keep."""
    model = _tiny(depth=4, drop_path_rate=0.6).train()
    pos = model.positions[-1]
    x, branch = torch.zeros(64, 5, 64), torch.ones(64, 5, 64)
    torch.manual_seed(0)
    out = pos._residual(x, branch, None)
    per_sample = out.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])
    kept = per_sample[:, 0] != 0
    assert 0 < int(kept.sum()) < 64 and torch.allclose(per_sample[kept, 0], torch.full_like(per_sample[kept, 0], 2.5))
    assert torch.equal(pos.eval()._residual(x, branch, None), branch)


def test_position_embedding_resized_for_other_input_sizes():
    """The bicubic resize of the position embedding to the input grid (timm's resample_abs_pos_embed, no
    antialiasing, so down- and up-sizing both interpolate like the pretrained recipe)."""
    import torch.nn.functional as F
    model = _tiny()
    with torch.no_grad():
        model.pos_embed.normal_()
    for grid in ((2, 3), (7, 5), (4, 4)):
        cls_pos, spatial = model._pos_embed_for(grid)
        grid_in = model.pos_embed[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
        want = F.interpolate(grid_in, size=grid, mode='bicubic', align_corners=False)
        assert torch.equal(cls_pos, model.pos_embed[:, :1])
        assert torch.allclose(spatial, want.permute(0, 2, 3, 1).reshape(1, -1, 64), atol=1e-6)


# ---- the backbone's own config ---------------------------------------------------------------------------------
CONFIG_SHAPES = [
    dict(adapter=None),
    dict(depth=8, mapping='cyclic'),
    dict(depth=7, mapping='interleave', adapter=dict(type='ParallelAdapter', bottleneck=4, sites=('mlp',))),
    dict(depth=6, mapping=[0, 1, 1, 2, 3, 0], adapter=dict(type='LoRA', rank=2, targets=('qkv', 'fc2'))),
    dict(depth=8, function_preserving=True, unshared=('norm',), img_size=(32, 48), in_channels=1),
    dict(depth=8, out_type='featmap', window_size=2, global_indices=(2, 7), use_rel_pos=True),
    dict(arch='deit-tiny', depth=13, out_type='featmap', window_size=3, use_rel_pos=True, patch_size=16,
         img_size=64),
]


@pytest.mark.parametrize('kw', CONFIG_SHAPES)
def test_config_round_trip_rebuilds_the_same_model(kw):
    import json
    kw = dict(kw)
    model = ScaleNetViT(kw.pop('arch', TINY_ARCH), **dict(dict(img_size=32, patch_size=8), **kw))
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg                   # plain JSON data
    rebuilt = ScaleNetViT.from_config(cfg)
    assert rebuilt.config() == cfg
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert rebuilt.plan == model.plan and [p.window_size for p in rebuilt.positions] == \
        [p.window_size for p in model.positions]
    assert cfg['mapping'] == list(model.plan.sources) and cfg['arch']['num_layers'] == model.plan.base_depth


def test_from_config_overrides_and_unknown_keys():
    model = _tiny(depth=8, out_type='featmap', window_size=2, adapter=dict(type='LoRA', rank=2))
    cfg = model.config()
    run = ScaleNetViT.from_config(cfg, drop_path_rate=0.3, out_indices=(3, 7), with_cp=True)
    assert run.config() == cfg and run.out_indices == (3, 7) and run.with_cp and run.positions[-1].drop_path == 0.3
    deeper = ScaleNetViT.from_config(cfg, depth=12)            # another plan: cyclic, global positions recomputed
    assert deeper.plan.sources == tuple(p % 4 for p in range(12)) and deeper.global_indices == (2, 5, 8, 11)
    spread = ScaleNetViT.from_config(cfg, mapping='interleave')
    assert spread.plan.depth == 8 and spread.plan.sources == (0, 0, 1, 1, 2, 2, 3, 3)
    with pytest.raises(ValueError, match=r"unknown keys \['drop_path_rate', 'typo'\]"):
        ScaleNetViT.from_config(dict(cfg, typo=1, drop_path_rate=0.1))


@pytest.mark.parametrize('kw', [dict(adapter=dict(type='LoRA', rank=2, targets=('qkv', 'fc1', 'fc2'))),
                                dict(adapter=None, function_preserving=True, unshared=('norm',))])
def test_position_export_state_is_what_untied_export_writes(kw):
    from mmscalenet.checkpoint import untied_state_dict
    model = _tiny(depth=7, **kw)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith('positions.'):
                p.normal_(std=0.2)
    untied = untied_state_dict(model)
    for p in range(model.plan.depth):
        own = model.untied_block_state(p)
        theirs = {k[len(f'blocks.{p}.'):]: v for k, v in untied.items() if k.startswith(f'blocks.{p}.')}
        assert own.keys() == theirs.keys() and all(torch.equal(own[k], theirs[k]) for k in own), p


def test_parallel_adapter_says_it_cannot_merge():
    model = _tiny(depth=5)
    with pytest.raises(ValueError, match='ReLU between the two projections'):
        model.untied_block_state(4)
    assert model.positions[0].adapter_attn.not_mergeable
    assert _tiny(adapter=None).positions[0].adapter_attn.not_mergeable is None


def test_adapter_objects_keep_the_checkpoint_keys():
    """Every position has an adapter object per site (a parameter-free no-op where there is none); LoRA deltas stay
    under ``lora.{target}`` once, also in a deep copy (which its site adapters then refer to)."""
    lora = _tiny(depth=5, adapter=dict(type='LoRA', rank=2, targets=('qkv', 'fc2')))
    keys = {k[len('positions.4.'):] for k in lora.state_dict() if k.startswith('positions.4.')}
    assert keys == {'lora.qkv.lora_A', 'lora.qkv.lora_B', 'lora.fc2.lora_A', 'lora.fc2.lora_B'}
    twin = copy.deepcopy(lora)
    assert twin.positions[4].adapter_attn._deltas[0] is twin.positions[4].lora['qkv']
    assert twin.positions[4].adapter_mlp._deltas == (None, twin.positions[4].lora['fc2'])
    bare = _tiny(depth=5, adapter=dict(type='ParallelAdapter', sites=('attn',)))
    keys = {k[len('positions.4.'):] for k in bare.state_dict() if k.startswith('positions.4.')}
    assert keys == {f'adapter_attn.{m}.{t}' for m in ('down', 'up') for t in ('weight', 'bias')}
    assert bare.positions[4].lora is None and not list(bare.positions[4].adapter_mlp.parameters())


def test_arch_dict_refuses_unknown_keys():
    """A typo'd arch key merged beside the right one (``--cfg-options model.backbone.arch.embed_dim=...``) is an
    error, not silently the old value."""
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0, embed_dim=64)
    with pytest.raises(ValueError, match=r"arch dict has unknown keys \['embed_dim'\]"):
        ScaleNetViT(arch=arch, depth=4, img_size=32)


def test_cls_token_out_indices_give_one_token_each():
    """mmpretrain's out_type='cls_token' with several out_indices: that many class tokens, never silently one."""
    torch.manual_seed(0)
    model = ScaleNetViT(TINY_ARCH, depth=6, img_size=32, patch_size=8, out_indices=(-3, -2, -1)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
        (_, prefix3), = model.forward_intermediates(x, indices=[3], output_fmt='NLC', intermediates_only=True,
                                                    return_prefix_tokens=True)
        assert len(outs) == 3 and all(o.shape == (2, 64) for o in outs)
        assert torch.allclose(outs[-1], model.forward_head(model.forward_features(x), pre_logits=True))
        assert torch.allclose(outs[0], prefix3[:, 0]) and not torch.allclose(outs[0], outs[-1])
        model.out_indices = (5,)
        assert len(model(x)) == 1 and torch.allclose(model(x)[0], outs[-1])


def test_load_state_dict_resizes_pos_embed_to_the_model_grid():
    from timm.layers import resample_abs_pos_embed
    small = ScaleNetViT(TINY_ARCH, img_size=32, patch_size=8)
    big = ScaleNetViT(TINY_ARCH, img_size=(48, 40), patch_size=8)
    big.load_state_dict(small.state_dict())
    want = resample_abs_pos_embed(small.pos_embed.detach(), [6, 5], [4, 4], num_prefix_tokens=1, antialias=False)
    assert torch.allclose(big.pos_embed, want)
