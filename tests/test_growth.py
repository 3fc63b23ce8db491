"""The growth modes: ScaleNet (``growth='shared'``) against the paper's foil, progressive growth (``'copy'``,
``'copy_zero'``), for both backbone families, through the same load / save / export / layer-decay paths."""
import pytest
import torch

from conftest import TINY_ARCH, timm_vit
from mmscalenet.checkpoint import CheckpointError, load_scalenet, save_scalenet, timm_kwargs, untied_state_dict
from mmscalenet.expansion import count_parameters, make_depth_plan
from mmscalenet.models.swin import ScaleNetSwin
from mmscalenet.models.vit import ScaleNetViT

TINY_SWIN = dict(embed_dims=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=2)
SWIN_DEPTHS = (1, 1, 5, 1)


def _vit(growth, mapping='cyclic', **kw):
    return ScaleNetViT(arch=TINY_ARCH, depth=8, mapping=mapping, growth=growth, img_size=32, patch_size=8,
                       **kw).eval()


def _swin(growth, depths=SWIN_DEPTHS, **kw):
    return ScaleNetSwin(arch=TINY_SWIN, depths=depths, growth=growth, img_size=32, out_type='featmap',
                        **kw).eval()


@pytest.fixture(scope='module')
def pretrained():
    """A 4-layer timm ViT (non-trivial norms and biases) and its state dict: the 'pretrained' model."""
    model = timm_vit()
    return model, model.state_dict()


@pytest.fixture(scope='module')
def swin_base_state(tmp_path_factory):
    """A plain (base-depth, no adapters) Swin with randomised tensors, saved as a ScaleNet file: the stand-in of a
    pretrained Swin-T (the file's path)."""
    torch.manual_seed(1)
    base = _swin('shared', depths=None, adapter=None)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp('swin') / 'swin_base.pth'
    save_scalenet(base, path)
    return str(path)


def _pre_logits(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.mark.parametrize('mapping', ['cyclic', 'interleave'])
def test_copy_at_step_0_is_timms_deep_vit_with_block_p_a_copy_of_pretrained_block_plan_p(pretrained, mapping):
    base, state = pretrained
    model = _vit('copy', mapping)
    model.load_pretrained(state)
    plan = make_depth_plan(4, 8, mapping)
    deep = timm_vit(depth=8)
    deep_state = {k: v for k, v in state.items() if not k.startswith('blocks.')}
    for p, j in enumerate(plan.sources):
        deep_state.update({f'blocks.{p}.{k.split(".", 2)[2]}': v for k, v in state.items()
                           if k.startswith(f'blocks.{j}.')})
    deep.load_state_dict(deep_state)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x)[0], _pre_logits(deep, x), rtol=1e-5, atol=1e-5)
    assert model.adapter_cfg is None   # the foil as the paper draws it: no adapters by default
    assert len(model.blocks) == 8 and model.plan.sources == tuple(range(8))
    assert model.growth_plan.sources == plan.sources and model.config()['mapping'] == list(plan.sources)


def test_copy_zero_at_step_0_computes_the_pretrained_model(pretrained):
    base, state = pretrained
    model = _vit('copy_zero')
    model.load_pretrained(state)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x)[0], _pre_logits(base, x), rtol=1e-5, atol=1e-5)
    for p, inserted in enumerate(model.growth_plan.inserted):   # only the inserted copies were zeroed
        fc2 = model.blocks[p].mlp.fc2.weight
        assert bool(fc2.abs().sum() == 0) == inserted
        assert bool(model.blocks[p].attn.proj.bias.abs().sum() == 0) == inserted


def test_copies_hold_about_twice_the_parameters_of_scalenet_at_2x():
    with torch.device('meta'):
        shared = ScaleNetViT('deit-small', depth=24)
        copy = ScaleNetViT('deit-small', depth=24, growth='copy')
        swin_shared = ScaleNetSwin('swin-tiny', depths=(2, 2, 18, 2))
        swin_copy = ScaleNetSwin('swin-tiny', depths=(2, 2, 18, 2), growth='copy')
    ratio = count_parameters(copy)['unique'] / count_parameters(shared)['unique']
    assert ratio >= 1.8, ratio
    # a Swin-T grown to Swin-S depth: the copies are a Swin-S; the shared model stays near a Swin-T
    assert count_parameters(swin_copy)['unique'] >= 1.5 * count_parameters(swin_shared)['unique']
    # the copies' layer weights are each run by one position: none is shared by several (the table says so)
    assert count_parameters(copy)['shared_by_several'] == count_parameters(swin_copy)['shared_by_several'] == 0
    assert count_parameters(shared)['shared_by_several'] == count_parameters(shared)['shared'] > 0
    swin = count_parameters(swin_shared)   # stages 0, 1, 3 keep their depth: their blocks run once
    assert 0 < swin['shared_by_several'] < swin['shared']


def test_after_one_step_copies_of_one_layer_differ_and_shared_positions_stay_one_tensor(pretrained):
    _, state = pretrained
    x, target = torch.randn(4, 3, 32, 32), torch.randn(4, 64)
    for growth in ('shared', 'copy'):
        model = _vit(growth).train()
        model.load_pretrained(state)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.nn.functional.mse_loss(model(x)[0], target).backward()
        opt.step()
        # positions 0 and 4 both run base layer 0 (cyclic)
        w0 = model.blocks[model.plan.sources[0]].attn.qkv.weight
        w4 = model.blocks[model.plan.sources[4]].attn.qkv.weight
        if growth == 'shared':
            assert w0 is w4
        else:
            assert w0 is not w4 and w0.data_ptr() != w4.data_ptr()
            assert not torch.equal(w0, w4)


def test_growth_mismatch_on_load_is_refused_in_one_line_with_the_options(pretrained, tmp_path):
    _, state = pretrained
    copy = _vit('copy')
    copy.load_pretrained(state)
    shared = _vit('shared')
    shared.load_pretrained(state)
    save_scalenet(copy, tmp_path / 'copy.pth')
    save_scalenet(shared, tmp_path / 'shared.pth')
    with pytest.raises(CheckpointError) as err:
        _vit('shared').load_pretrained(str(tmp_path / 'copy.pth'))
    msg = str(err.value)
    assert '\n' not in msg and "growth='copy'" in msg and 'model.backbone.growth=copy' in msg
    assert 'model.backbone.adapter=None' in msg
    with pytest.raises(CheckpointError) as err:
        _vit('copy').load_pretrained(str(tmp_path / 'shared.pth'))
    assert 'model.backbone.growth=shared' in str(err.value) and '\n' not in str(err.value)
    # 'copy' and 'copy_zero' differ only in how the copies start: a trained copy loads into either, as it is
    again = _vit('copy_zero')
    again.load_pretrained(str(tmp_path / 'copy.pth'))
    for a, b in zip(again.state_dict().values(), copy.state_dict().values()):
        assert torch.equal(a, b)


def test_a_copy_checkpoint_round_trips_and_exports_to_timm(pretrained, tmp_path):
    _, state = pretrained
    model = _vit('copy')
    model.load_pretrained(state)
    with torch.no_grad():   # trained copies: every layer its own values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_scalenet(model, tmp_path / 'copy.pth')
    back, _ = load_scalenet(str(tmp_path / 'copy.pth'))
    assert back.growth == 'copy' and back.growth_plan == model.growth_plan
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    from timm.models.vision_transformer import VisionTransformer
    timm_model = VisionTransformer(**timm_kwargs(model)).eval()
    timm_model.load_state_dict(untied_state_dict(model), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_pre_logits(timm_model, x), model(x)[0], rtol=1e-5, atol=1e-5)
    # a trained copy model loads at its own depth only: another depth would leave layers newly initialised
    for other_plan in (False, True):
        with pytest.raises(CheckpointError, match=r'load only at the depth they were saved at\. Build it with '
                                                  r'--cfg-options model.backbone.depth=8$'):
            ScaleNetViT(arch=TINY_ARCH, depth=12, growth='copy', img_size=32, patch_size=8).load_pretrained(
                str(tmp_path / 'copy.pth'), allow_other_plan=other_plan)


def test_layer_decay_of_the_copies_is_that_of_a_plain_vit_of_the_grown_depth(pretrained):
    from mmscalenet.engine.layer_decay import layer_id_fn
    ids, n = layer_id_fn(_vit('copy'))
    assert n == 8
    assert [ids(f'blocks.{p}.attn.qkv.weight') for p in range(8)] == [p + 1 for p in range(8)]


def test_function_preserving_gates_belong_to_scalenet_and_bad_modes_are_refused():
    with pytest.raises(ValueError, match='copy_zero'):
        _vit('copy', function_preserving=True)
    with pytest.raises(ValueError, match='growth must be one of'):
        _vit('stacked')
    with pytest.raises(ValueError, match='growth must be one of'):
        _swin('copies')


def test_swin_copies_start_as_the_shared_model_and_copy_zero_as_the_base(swin_base_state):
    x = torch.randn(2, 3, 32, 32)
    base = _swin('shared', depths=None, adapter=None)
    base.load_pretrained(swin_base_state)
    shared = _swin('shared', adapter=None)
    shared.load_pretrained(swin_base_state)
    copy, zero = _swin('copy'), _swin('copy_zero')
    copy.load_pretrained(swin_base_state)
    zero.load_pretrained(swin_base_state)
    assert copy.adapter_cfg is None and len(copy.layers[2].blocks) == 5 and len(shared.layers[2].blocks) == 2
    for a, b in zip(copy(x), shared(x)):      # copies of the same tensors compute the same function
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(zero(x), base(x)):        # the inserted copies add nothing to the residual stream
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert count_parameters(copy)['unique'] > count_parameters(shared)['unique']
    w = [copy.layers[2].blocks[p].attn.qkv.weight for p in (0, 2)]   # both copies of base block 0
    assert torch.equal(w[0], w[1]) and w[0].data_ptr() != w[1].data_ptr()


def test_swin_copy_checkpoint_round_trips_and_mismatch_is_refused(swin_base_state, tmp_path):
    copy = _swin('copy')
    copy.load_pretrained(swin_base_state)
    save_scalenet(copy, tmp_path / 'swin_copy.pth')
    back, _ = load_scalenet(str(tmp_path / 'swin_copy.pth'))
    assert back.growth == 'copy'
    for a, b in zip(copy.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match='model.backbone.growth=copy'):
        _swin('shared').load_pretrained(str(tmp_path / 'swin_copy.pth'))
    deeper = tuple(d + (s == 2) for s, d in enumerate(SWIN_DEPTHS))
    with pytest.raises(CheckpointError, match='load only at the depth they were saved at.*model.backbone.depths='):
        _swin('copy', depths=deeper).load_pretrained(str(tmp_path / 'swin_copy.pth'))
