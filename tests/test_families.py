"""One checkpoint path for both backbone families: the same promises tested on a grown ViT and a grown Swin (save /
load round trip, continuing at other plans, untied export equal to timm's model, refusals that print the
``--cfg-options`` that fix them, files of the previous release)."""
import os

import pytest
import torch

from conftest import ROOT, TINY_ARCH, randomised, tool_main
from mmscalenet.checkpoint import (CheckpointError, family_of, load_backbone, load_scalenet, position_correspondence,
                                   read_checkpoint, read_record, save_scalenet, scalenet_meta, timm_kwargs,
                                   untied_state_dict)
from mmscalenet.models import ScaleNetSwin, ScaleNetViT

SWIN_ARCH = dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
BUILD = {   # family -> (class, base arguments, grown plans, other plans, their --cfg-options)
    'vit': (ScaleNetViT, dict(arch=TINY_ARCH, img_size=32, patch_size=8), dict(depth=6), dict(depth=8),
            'model.backbone.depth=6 model.backbone.mapping=cyclic'),
    'swin': (ScaleNetSwin, dict(arch=SWIN_ARCH, img_size=32, out_type='pooled'), dict(depths=(2, 3)),
             dict(depths=(2, 4)), 'model.backbone.depths="(2,3)" model.backbone.mapping=cyclic'),
}
FAMILIES = sorted(BUILD)
DATA = os.path.join(ROOT, 'tests', 'data')


def _build(family, plans='grown', **kw):
    cls, base, grown, other, _ = BUILD[family]
    return cls(**{**base, **(grown if plans == 'grown' else other if plans == 'other' else {}), **kw})


def _x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _width(model):
    return model.num_features[-1] if isinstance(model.num_features, tuple) else model.num_features


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('family', FAMILIES)
def test_save_load_round_trip(tmp_path, family, suffix):
    model = randomised(_build(family, adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True))
    head = {'weight': torch.randn(3, _width(model)), 'bias': torch.randn(3)}
    path = str(tmp_path / f'm{suffix}')
    save_scalenet(model, path, head=head)
    meta = read_checkpoint(path)[1]
    assert meta['family'] == family and meta['format_version'] == 2 and family_of(meta) == family
    loaded, loaded_head = load_scalenet(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)         # read from the file: exact
    assert all(torch.equal(head[k], loaded_head[k]) for k in head)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(_x())[0], model(_x())[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('family', FAMILIES)
def test_continue_at_other_plans(tmp_path, family):
    """Shared tensors load as they are; each position takes the per-position tensors of its counterpart (same
    base layer, same rank among that layer's positions); the refusal without allow_other_plan names the fix."""
    model = randomised(_build(family, adapter=dict(type='ParallelAdapter', bottleneck=4)))
    path = str(tmp_path / 'm.pth')
    save_scalenet(model, path)
    deeper = _build(family, 'other', adapter=dict(type='ParallelAdapter', bottleneck=4))
    with pytest.raises(CheckpointError) as err:
        load_backbone(deeper, path)
    assert BUILD[family][4] in str(err.value) and 'allow_other_plan=True' in str(err.value)
    report = load_backbone(deeper, path, allow_other_plan=True)
    assert report['remapped'] and report['layout'] == 'scalenet'
    own, saved = deeper.state_dict(), model.state_dict()
    for (prefix, plan, _), (_, old, _) in zip(deeper.growth_stacks(), model.growth_stacks()):
        for p, q in position_correspondence(old.sources, plan.sources).items():
            keys = [k for k in saved if k.startswith(f'{prefix}positions.{q}.')]
            assert keys and all(torch.equal(own[k.replace(f'positions.{q}.', f'positions.{p}.', 1)], saved[k])
                                for k in keys)
        for j in range(plan.base_depth):
            key = next(k for k in saved if k.startswith(f'{prefix}blocks.{j}.attn.qkv.weight'))
            assert torch.equal(own[key], saved[key])
    rebuilt, _ = load_scalenet(path, **BUILD[family][3])   # the same through load_scalenet's overrides
    assert rebuilt.config()['mapping'] == deeper.config()['mapping']


@pytest.mark.parametrize('family', FAMILIES)
def test_untied_export_computes_what_timm_computes(family):
    """LoRA merged, gates folded, every position its own block: timm's own model (strict load) computes the
    grown backbone's features and logits."""
    model = randomised(_build(family, adapter=dict(type='LoRA', rank=2), function_preserving=True))
    head = {'weight': torch.randn(5, _width(model)), 'bias': torch.randn(5)}
    if family == 'vit':
        from timm.models.vision_transformer import VisionTransformer as Timm
    else:
        from timm.models.swin_transformer import SwinTransformer as Timm
    ref = Timm(**timm_kwargs(model, num_classes=5)).eval()
    ref.load_state_dict(untied_state_dict(model, head=head))   # strict
    x = _x()
    with torch.no_grad():
        feats = model(x)[0]
        torch.testing.assert_close(ref.forward_head(ref.forward_features(x), pre_logits=True), feats,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref(x), torch.nn.functional.linear(feats, head['weight'], head['bias']),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_other_backbone_refused_in_one_line_with_the_fix(tmp_path, family):
    model = randomised(_build(family, adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True))
    path = str(tmp_path / 'm.pth')
    save_scalenet(model, path)
    other = _build(family, adapter=dict(type='ParallelAdapter', bottleneck=2))
    with pytest.raises(CheckpointError) as err:
        load_backbone(other, path)
    text = str(err.value)
    assert text.startswith(path) and '\n' not in text
    assert '--cfg-options model.backbone.adapter.bottleneck=4 model.backbone.function_preserving=True' in text
    stranger = _build('swin' if family == 'vit' else 'vit')
    with pytest.raises(CheckpointError, match=f'saved from a {type(model).__name__} backbone, not a '
                                              f'{type(stranger).__name__}'):
        load_backbone(stranger, path)


# ---- files written by the previous release (tests/data/make_fixtures.py) ------------------------------------------
OLD_FILES = {'vit': 'scalenet_v1', 'swin': 'swin_v1'}


def _assert_file_tensors_loaded(model, path, prefix=''):
    """Tensors read from a file compare exactly: every backbone tensor of the file is in the model, unchanged."""
    state = read_checkpoint(path)[0]
    own = model.state_dict()
    keys = [k for k in state if k.startswith(prefix) and k[len(prefix):] in own]
    assert [k for k in keys if not torch.equal(own[k[len(prefix):]], state[k])] == []
    assert len(keys) == len(own)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('family', FAMILIES)
def test_old_scalenet_files_load(family, suffix):
    stem = OLD_FILES[family]
    ref = torch.load(os.path.join(DATA, f'{stem}_reference.pt'), weights_only=True)
    path = os.path.join(DATA, f'{stem}_tiny{suffix}')
    assert read_record(read_checkpoint(path)[1]).family == family and 'family' not in read_checkpoint(path)[1]
    model, head = load_scalenet(path)
    assert model.family == family and model.function_preserving and set(head) == {'weight', 'bias'}
    _assert_file_tensors_loaded(model, path)
    with torch.no_grad():   # computed here, stored by another CPU: compared with a tolerance, never bit for bit
        torch.testing.assert_close(model.eval()(ref['input'])[0], ref['output'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_old_runner_checkpoints_load(family):
    """A training checkpoint of the previous release (``backbone.`` keys, ``meta.scalenet`` of its hook)."""
    stem = OLD_FILES[family]
    if family == 'vit':
        pytest.importorskip('mmengine')   # its runner file holds mmengine's HistoryBuffer and numpy scalars
    ref = torch.load(os.path.join(DATA, f'{stem}_reference.pt'), weights_only=True)
    model = BUILD[family][0](ref['arch'], **ref['kwargs']).eval()
    path = os.path.join(DATA, f'{stem}_runner.pth')
    report = load_backbone(model, path)
    assert not report['new'] and not report['remapped']
    _assert_file_tensors_loaded(model, path, prefix='backbone.')
    with torch.no_grad():
        torch.testing.assert_close(model(ref['input'])[0], ref['output'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_a_plain_start_is_grown_at_load_and_logged_as_a_warning(family, monkeypatch):
    """A plain checkpoint (base depths, no metadata) loaded into a grown model: the log says the model does not
    start from a ScaleNet (ImageNet-stage) checkpoint. (Recorded at the log call: where an earlier test left an
    mmengine logger, the message goes there, which does not propagate to pytest's caplog.)"""
    import logging

    import mmscalenet.checkpoint.load as load_module
    records = []
    monkeypatch.setattr(load_module, 'log', lambda msg, level=logging.INFO: records.append((level, msg)))
    plain = dict(randomised(_build(family, plans='base', adapter=None, unshared=())).state_dict())   # timm's layout
    report = load_backbone(_build(family), plain)
    assert report['layout'] == 'timm' and report['loaded']
    assert any(level == logging.WARNING and 'checkpoint, grown at load to' in msg for level, msg in records)


# ---- the tools pick the family from what they are given, or say what they found --------------------------------


def test_tools_name_the_family_they_cannot_use(tmp_path, capsys):
    export, expand = tool_main('export'), tool_main('expand')
    model = _build('vit')
    state = {k: v.clone() for k, v in model.state_dict().items()}
    unknown = tmp_path / 'unknown.pth'
    torch.save({'state_dict': state, 'meta': {'scalenet': dict(scalenet_meta(model), family='convnext')}}, unknown)
    assert export([str(unknown), str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err.strip()
    assert "family 'convnext'" in err and "['swin', 'vit']" in err and '\n' not in err
    config = tmp_path / 'cfg.py'
    config.write_text("model = dict(backbone=dict(type='SwinTransformer', embed_dims=16))\n")
    assert export([str(unknown), str(tmp_path / 'o.pth'), '--config', str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert "model.backbone.type is 'SwinTransformer'" in err and 'ScaleNetSwin' in err and '\n' not in err
    with pytest.raises(SystemExit, match="--arch 'resnet50' is neither a ViT arch"):
        expand([str(unknown), str(tmp_path / 'g.pth'), '--arch', 'resnet50', '--depth', '8'])
    with pytest.raises(SystemExit, match="--backbone vit but --arch 'swin-tiny' is a swin arch"):
        expand([str(unknown), str(tmp_path / 'g.pth'), '--arch', 'swin-tiny', '--backbone', 'vit', '--depth', '8'])
    assert not (tmp_path / 'o.pth').exists() and not (tmp_path / 'g.pth').exists()
