"""ScaleNetSwin checkpoints: the three foreign layouts (timm, Microsoft, mmdet / mmpretrain), the project's own
format at the same and at other stage plans, config() / from_config(), and tools/expand.py + tools/export.py on a
Swin (CPU, tiny Swins; the promises shared with the ViT are tests/test_families.py's)."""
import os.path as osp
import re

import pytest
import torch

from conftest import ROOT
from mmscalenet.checkpoint import (detect_layout, load_scalenet, save_scalenet, scalenet_meta, timm_kwargs,
                                   timm_to_unfold_order, unfold_to_timm_order)
from mmscalenet.models.swin import ScaleNetSwin, relative_position_index
from test_swin import GROWN, IMG, TINY, _randomise, scalenet, timm_pooled, tiny_timm_swin

timm_swin = pytest.importorskip('timm.models.swin_transformer')


# ---- checkpoint layouts ------------------------------------------------------------------------------------------
def microsoft_layout(timm_state, num_stages=4):
    """timm -> Microsoft's file: downsample at the end of the previous stage, index / mask buffers, plain head."""
    out = {}
    for k, v in timm_state.items():
        k = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', k)
        out[k] = v
        m = re.match(r'^(layers\.\d+\.blocks\.\d+\.attn\.)relative_position_bias_table$', k)
        if m:   # the file's index buffer, as Microsoft's model saves it (mmdet loads it into its own buffer)
            w = (int(round(v.shape[0] ** 0.5)) + 1) // 2
            out[m.group(1) + 'relative_position_index'] = relative_position_index((w, w), (w, w))
    out['layers.0.blocks.1.attn_mask'] = torch.zeros(16, 16, 16)
    out['head.weight'], out['head.bias'] = torch.zeros(10, 256), torch.zeros(10)
    return {'model': out}


def openmmlab_state(tmp_path, timm_state, img=IMG):
    """mmdet's own SwinTransformer, loaded from the Microsoft file by mmdet's converter: its real key layout."""
    pytest.importorskip('mmdet')
    from mmdet.models.backbones.swin import SwinTransformer
    from mmengine.config import ConfigDict
    path = str(tmp_path / 'microsoft.pth')
    torch.save(microsoft_layout(timm_state), path)
    model = SwinTransformer(pretrain_img_size=img, embed_dims=32, depths=TINY['depths'], num_heads=TINY['num_heads'],
                            window_size=4, drop_path_rate=0.0, convert_weights=True,
                            init_cfg=ConfigDict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()   # mmdet's SwinTransformer.train() returns None
    return model


def test_patch_merging_channel_orders_are_inverse():
    w = torch.randn(8, 16)
    assert torch.equal(unfold_to_timm_order(timm_to_unfold_order(w)), w)
    n = torch.randn(16)
    assert torch.equal(unfold_to_timm_order(timm_to_unfold_order(n)), n)
    assert not torch.equal(timm_to_unfold_order(n), n)


def test_three_layouts_load_to_identical_outputs(tmp_path, mmdet_scope):
    # 128 px: stage maps 32 / 16 / 8 / 4, no window clipped, so every layout has the same table sizes
    img = 128
    ref = tiny_timm_swin(img)
    timm_state = ref.state_dict()
    mm = openmmlab_state(tmp_path, timm_state, img)
    mm_state = {f'backbone.{k}': v for k, v in mm.state_dict().items()}   # as in a detector checkpoint
    assert any('.attn.w_msa.' in k for k in mm_state) and any('ffn.layers.0.0' in k for k in mm_state)
    assert 'backbone.stages.0.downsample.reduction.weight' in mm_state
    sources = {'timm': timm_state, 'microsoft': microsoft_layout(timm_state), 'openmmlab': {'state_dict': mm_state}}
    x = torch.randn(2, 3, img, img)
    outs = {}
    for name, src in sources.items():
        model = ScaleNetSwin(TINY, depths=(2, 2, 4, 2), adapter=None, img_size=img, out_indices=(0, 1, 2, 3))
        report = model.load_pretrained(src)
        assert report['layout'] == name
        # only output norms can be new: norm0-2 everywhere, norm3 too for mmdet (its converter drops timm's norm)
        assert all(re.fullmatch(r'norm\d\.(weight|bias)', k) for k in report['new']), report['new']
        with torch.no_grad():
            outs[name] = model.eval()(x)
    for name in ('microsoft', 'openmmlab'):
        for s in range(3):   # norm0-2 are fresh LayerNorms (ones / zeros) in every case
            assert (outs[name][s] - outs['timm'][s]).abs().max() < 1e-5, (name, s)
    assert (outs['microsoft'][3] - outs['timm'][3]).abs().max() < 1e-5
    # mmdet's own forward on the same weights, where its windows equal timm's (maps larger than the window: stages
    # 0-2; at 4 x 4 mmdet still shifts, timm does not): shows that the unfold channel order of its patch merging was
    # converted right (stages 1 and 2 start with one)
    model = ScaleNetSwin(TINY, adapter=None, img_size=img, out_indices=(0, 1, 2, 3))
    model.load_pretrained({'state_dict': mm_state})
    with torch.no_grad():
        mine, theirs = model.eval()(x), mm(x)
    for s in (0, 1, 2):
        assert (mine[s] - theirs[s]).abs().max() < 1e-5, s


def test_layout_detection_and_mismatch_errors():
    from mmscalenet.checkpoint import CheckpointError
    state = tiny_timm_swin().state_dict()
    assert detect_layout(state) == 'timm'
    assert detect_layout(microsoft_layout(state)['model']) == 'microsoft'
    with pytest.raises(CheckpointError, match='base depths'):
        ScaleNetSwin(dict(TINY, depths=(2, 2, 4, 2)), adapter=None, img_size=IMG).load_pretrained(state)
    with pytest.raises(CheckpointError, match='no Swin blocks'):
        scalenet().load_pretrained({'blocks.0.attn.qkv.weight': torch.zeros(3, 1)})


def test_own_checkpoint_round_trip_and_with_cp():
    torch.manual_seed(0)
    model = scalenet(GROWN, adapter=dict(type='ParallelAdapter', bottleneck=4))
    _randomise(model)
    again = scalenet(GROWN, adapter=dict(type='ParallelAdapter', bottleneck=4), with_cp=True)
    report = again.load_pretrained(model.state_dict())
    assert report['layout'] == 'scalenet' and not report['new']
    x = torch.randn(1, 3, IMG, IMG)
    model.train()
    again.train()
    a, b = model(x)[0], again(x)[0]
    assert (a - b).abs().max() < 1e-6
    a.sum().backward()
    b.sum().backward()
    ga = dict(model.named_parameters())
    for name, p in again.named_parameters():
        assert (p.grad - ga[name].grad).abs().max() < 1e-5, name


# ---- config() / from_config() and the ScaleNet-Swin checkpoint format ---------------------------------------------
def test_config_round_trip_and_overrides():
    import json
    model = scalenet(GROWN, adapter=dict(type='LoRA', rank=2), mapping=['cyclic', [0, 1, 1], 'interleave', 'cyclic'],
                     function_preserving=True, out_type='featmap', out_indices=(1, 3), drop_path_rate=0.2)
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg   # plain JSON data
    assert cfg['mapping'][1] == [0, 1, 1] and cfg['depths'] == list(GROWN) and 'drop_path_rate' not in cfg
    again = ScaleNetSwin.from_config(cfg)
    assert again.config() == cfg
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert ScaleNetSwin.from_config(cfg, drop_path_rate=0.1).layers[3].positions[2].drop_path > 0
    deeper = ScaleNetSwin.from_config(cfg, depths=(2, 2, 6, 2))   # another plan: cyclic stages
    assert deeper.config()['mapping'][2] == [0, 1, 0, 1, 0, 1]
    assert ScaleNetSwin.from_config(cfg, out_type='pooled').out_indices == (3,)
    with pytest.raises(ValueError, match=r"unknown keys \['drop_path_rate', 'foo'\]"):
        ScaleNetSwin.from_config(dict(cfg, foo=1, drop_path_rate=0.1))


def _run_checkpoint(model):
    """What a training run writes for a Swin detector / classifier: ``backbone.``-prefixed tensors, other modules,
    and ``meta['scalenet']`` from :func:`swin_scalenet_meta` (the meta hook's payload)."""
    state = {f'backbone.{k}': v.clone() for k, v in model.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(2, 2)
    return {'state_dict': state, 'meta': {'scalenet': scalenet_meta(model), 'scalenet_prefix': 'backbone.'}}


def test_scalenet_swin_checkpoint_loads_at_the_same_and_other_plans(tmp_path):
    from mmscalenet.checkpoint import CheckpointError
    adapter = dict(type='ParallelAdapter', bottleneck=4)
    grown = scalenet(GROWN, adapter=adapter)
    grown.load_pretrained(tiny_timm_swin().state_dict())
    _randomise(grown)
    path = tmp_path / 'epoch_1.pth'
    torch.save(_run_checkpoint(grown), path)
    same = scalenet(GROWN, adapter=adapter)
    report = same.load_pretrained(str(path))
    assert report['layout'] == 'scalenet' and not report['new'] and not report['remapped']
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.equal(same.eval()(x)[0], grown.eval()(x)[0])
    # another depth: refused in one line that says how to build the checkpoint's backbone, unless allowed
    with pytest.raises(CheckpointError) as info:
        scalenet((2, 2, 6, 2), adapter=adapter).load_pretrained(str(path))
    msg = str(info.value)
    assert '\n' not in msg and 'model.backbone.depths="(2,3,5,3)"' in msg and 'allow_other_plan=True' in msg
    other = scalenet((2, 2, 6, 2), adapter=adapter, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                                  allow_other_plan=True))
    other.init_weights()
    own = other.state_dict()
    for key, value in grown.state_dict().items():
        if '.positions.' not in key:   # shared blocks, patch embedding, merging, norms: as saved
            assert torch.equal(own[key], value), key
    for s, p, q in ((1, 1, 1), (2, 4, 4), (3, 0, 0)):   # positions with a counterpart keep their tensors
        for rest in ('adapter_attn.up.weight', 'relative_position_bias_table'):
            assert torch.equal(own[f'layers.{s}.positions.{p}.{rest}'], grown.state_dict()[f'layers.{s}.positions.{q}.{rest}'])
    # stage 2 position 5 is new: zero adapter (starts as its block), bias table copied from block 1's original position
    assert not own['layers.2.positions.5.adapter_attn.up.weight'].any()
    assert torch.equal(own['layers.2.positions.5.relative_position_bias_table'],
                       grown.state_dict()['layers.2.positions.1.relative_position_bias_table'])
    # other adapters are refused whatever the plan; a ViT checkpoint is named as such
    with pytest.raises(CheckpointError, match='model.backbone.adapter.bottleneck=4'):
        scalenet(GROWN, adapter=dict(type='ParallelAdapter', bottleneck=8)).load_pretrained(str(path), True)
    vit_meta = {'state_dict': dict(grown.state_dict()), 'meta': {'scalenet': {'arch': {'embed_dims': 32}}}}
    with pytest.raises(CheckpointError, match='not a ScaleNetSwin'):
        scalenet(GROWN, adapter=adapter).load_pretrained(vit_meta)
    # per-position tensors without a recorded plan load only at the same depths
    with pytest.raises(CheckpointError, match=r'\[2, 3, 5, 3\] positions per stage but no stage plans'):
        scalenet((2, 2, 6, 2), adapter=adapter).load_pretrained(grown.state_dict())


def test_save_and_load_swin_round_trip(tmp_path):
    grown = scalenet(GROWN, adapter=dict(type='LoRA', rank=2), function_preserving=True)
    _randomise(grown)
    head = {'weight': torch.randn(10, 256), 'bias': torch.randn(10)}
    x = torch.randn(1, 3, IMG, IMG)
    for name in ('grown.pth', 'grown.safetensors'):
        save_scalenet(grown, str(tmp_path / name), head=head)
        loaded, loaded_head = load_scalenet(str(tmp_path / name))
        assert loaded.config() == grown.config() and torch.equal(loaded_head['weight'], head['weight'])
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x)[0], grown.eval()(x)[0])
    deeper, _ = load_scalenet(str(tmp_path / 'grown.pth'), depths=(2, 4, 6, 4))
    assert deeper.config()['depths'] == [2, 4, 6, 4]
    assert torch.equal(deeper.layers[2].blocks[1].mlp.fc1.weight, grown.layers[2].blocks[1].mlp.fc1.weight)


# ---- tools/expand.py and tools/export.py with a Swin -------------------------------------------------------------
def _tool(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'mmscalenet_{name}_tool', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_expand_then_export_a_swin_through_the_tools(tmp_path, capsys):
    """expand.py grows a timm Swin file (LoRA), export.py writes a plain timm Swin of the grown depths computing the
    same logits; ParallelAdapter is refused with the shared format offered; bad depths write nothing."""
    import json
    expand, export = _tool('expand'), _tool('export')
    ref = tiny_timm_swin(num_classes=10)
    src = tmp_path / 'timm_swin.pth'
    torch.save({'model': ref.state_dict()}, src)
    arch = json.dumps(dict(TINY))
    grown, plain = tmp_path / 'grown.pth', tmp_path / 'plain.pth'
    assert expand([str(src), str(grown), '--arch', arch, '--depths', '2,3,4,2', '--adapter', 'lora', '--rank', '2',
                   '--function-preserving', '--img-size', str(IMG)]) == 0
    out = capsys.readouterr().out
    assert 'stage 1: depth plan: 2 base layers -> 3 positions' in out and '| unique |' in out and f'wrote {grown}' in out
    model, head = load_scalenet(str(grown))
    assert model.config()['depths'] == [2, 3, 4, 2] and tuple(head['fc.weight'].shape) == (10, 256)
    assert export([str(grown), str(plain)]) == 0
    assert 'check: timm SwinTransformer output == ScaleNetSwin output' in capsys.readouterr().out
    timm_model = timm_swin.SwinTransformer(**timm_kwargs(model, num_classes=10)).eval()
    timm_model.load_state_dict(torch.load(plain, weights_only=True))   # strict: a plain timm Swin
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():   # function-preserving, zero LoRA B: the grown model is still the pretrained timm Swin
        assert (timm_model(x) - ref(x)).abs().max() < 1e-5
    parallel = tmp_path / 'parallel.pth'
    assert expand(['--backbone', 'swin', str(src), str(parallel), '--arch', arch, '--depths', '2,2,4,2',
                   '--img-size', str(IMG)]) == 0
    assert export([str(parallel), str(tmp_path / 'no.pth')]) == 2
    assert '--format scalenet' in capsys.readouterr().err and not (tmp_path / 'no.pth').exists()
    assert export([str(parallel), str(tmp_path / 'shared.safetensors'), '--format', 'scalenet']) == 0
    assert load_scalenet(str(tmp_path / 'shared.safetensors'))[0].config() == load_scalenet(str(parallel))[0].config()
    with pytest.raises(SystemExit, match='stage 2: depth D=1 is smaller'):
        expand([str(src), str(tmp_path / 'bad.pth'), '--arch', arch, '--depths', '2,2,1,2', '--img-size', str(IMG)])
    assert not (tmp_path / 'bad.pth').exists()
