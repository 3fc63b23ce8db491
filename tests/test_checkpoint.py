"""The ScaleNet checkpoint format, safe loading (no pickled code runs), atomic writes."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_ARCH, randomised
from mmscalenet.checkpoint import (CheckpointError, atomic_save, load_scalenet, position_correspondence,
                                   safe_load, safe_mmengine_io, save_scalenet, split_checkpoint)
from mmscalenet.models import ScaleNetViT

CONFIGS = {
    'parallel': dict(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4)),
    'lora-fp-norms': dict(depth=7, mapping='interleave', adapter=dict(type='LoRA', rank=2),
                          function_preserving=True, unshared=('norm',)),
    'featmap-window-relpos': dict(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4, sites='mlp'),
                                  out_type='featmap', window_size=2, use_rel_pos=True, global_indices=(5,),
                                  out_indices=(2, 5)),
    'explicit-noadapter': dict(depth=5, mapping=[3, 2, 1, 0, 3], adapter=None),
}


def _tiny(**kw):
    kw.setdefault('img_size', 32)
    kw.setdefault('patch_size', 8)
    return ScaleNetViT(TINY_ARCH, **kw)


def _same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- format round trip -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_round_trip_is_bit_exact(tmp_path, name, suffix):
    model = randomised(_tiny(**CONFIGS[name]))
    path = tmp_path / f'model{suffix}'
    head = {'weight': torch.randn(3, 64), 'bias': torch.randn(3)}
    save_scalenet(model, str(path), head=head)
    loaded, loaded_head = load_scalenet(str(path))
    assert _same_tensors(model, loaded)
    assert loaded.plan == model.plan and loaded.adapter_cfg == model.adapter_cfg
    assert all(torch.equal(head[k], loaded_head[k]) for k in head)
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.eval()(x)):
            assert torch.equal(a, b)
    # the sharing comes back: every position runs the one tensor of its base layer
    assert loaded.blocks[loaded.plan.sources[-1]].attn.qkv.weight.data_ptr() == \
        loaded.blocks[loaded.plan.sources[-1]].attn.qkv.weight.data_ptr()
    assert sum(1 for _ in loaded.parameters()) == sum(1 for _ in model.parameters())


def test_each_shared_tensor_stored_once(tmp_path):
    model = _tiny(depth=12, adapter=None)
    save_scalenet(model, str(tmp_path / 'm.pth'))
    state, meta = split_checkpoint(safe_load(str(tmp_path / 'm.pth')))
    assert not any(k.startswith('blocks.4.') for k in state)      # 4 base layers, 12 positions
    assert meta['sources'] == [0, 1, 2, 3] * 3 and meta['base_depth'] == 4
    # the file is plain data: loads with weights_only=True and no allow-list at all
    obj = torch.load(tmp_path / 'm.pth', weights_only=True)
    assert set(obj) == {'state_dict', 'meta'}


def test_safetensors_accepts_the_format_but_not_tied_tensors(tmp_path):
    """safetensors refuses tensors sharing memory; the ScaleNet format never hands it any."""
    from safetensors.torch import load_file, save_file
    model = _tiny(depth=8)
    save_scalenet(model, str(tmp_path / 'm.safetensors'))
    assert set(load_file(str(tmp_path / 'm.safetensors'))) == set(model.state_dict())
    w = model.blocks[0].attn.qkv.weight
    with pytest.raises(RuntimeError, match='share memory'):     # what a naive untied dict of views would hit
        save_file({'blocks.0.attn.qkv.weight': w, 'blocks.4.attn.qkv.weight': w}, str(tmp_path / 'bad.safetensors'))


# ---- continuing at another depth ---------------------------------------------------------------------------------
def test_position_correspondence_follows_base_layers():
    assert position_correspondence([0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1, 2, 3]) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4,
                                                                                    5: 5}
    # interleave 6 -> 8: the k-th use of layer j takes the k-th saved use of layer j
    assert position_correspondence([0, 0, 1, 2, 2, 3], [0, 0, 1, 1, 2, 2, 3, 3]) == {0: 0, 1: 1, 2: 2, 4: 3, 5: 4,
                                                                                    6: 5}


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_grown_checkpoint_continues_at_a_larger_depth(tmp_path, suffix):
    """A function-preserving model saved at D=6 and reloaded at D=8 computes the same function, then trains."""
    model = randomised(_tiny(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True,
                             unshared=('norm',)))
    path = str(tmp_path / f'd6{suffix}')
    save_scalenet(model, path)
    deeper, _ = load_scalenet(path, depth=8)
    assert deeper.plan.sources == (0, 1, 2, 3, 0, 1, 2, 3)
    for j in range(4):
        assert torch.equal(deeper.blocks[j].mlp.fc1.weight, model.blocks[j].mlp.fc1.weight)
    for p in range(6):
        assert torch.equal(deeper.positions[p].adapter_mlp.up.weight, model.positions[p].adapter_mlp.up.weight)
        assert torch.equal(deeper.positions[p].norm1.weight, model.positions[p].norm1.weight)
    for p in (6, 7):   # new positions: fresh gates (0) and adapters, own norms copied from their base layer
        assert float(deeper.positions[p].gate_attn.detach()) == 0.0
        assert torch.equal(deeper.positions[p].norm2.weight, model.positions[p - 4].norm2.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(deeper.eval()(x)[0], model(x)[0], atol=1e-6, rtol=0)
    # the same through the Pretrained path of a model built from a config
    fresh = _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True,
                  unshared=('norm',), init_cfg=dict(type='Pretrained', checkpoint=path, allow_other_plan=True))
    fresh.init_weights()
    a, b = fresh.state_dict(), deeper.state_dict()
    random_init = [k for k in a if k.startswith(('positions.6.', 'positions.7.')) and '.down.' in k]
    assert random_init and all(torch.equal(a[k], b[k]) for k in a if k not in random_init)
    # and training continues
    deeper.train()
    opt = torch.optim.SGD(deeper.parameters(), lr=0.1)
    deeper(x)[0].pow(2).mean().backward()
    opt.step()
    assert deeper.positions[7].gate_mlp.grad is not None


def test_checkpoint_at_another_depth_can_shrink_within_the_base():
    model = randomised(_tiny(depth=8, adapter=dict(type='LoRA', rank=2)))
    state = {'state_dict': model.state_dict(), 'meta': {'scalenet': {'sources': list(model.plan.sources),
                                                                      'base_depth': 4}}}
    shallow = _tiny(depth=5, adapter=dict(type='LoRA', rank=2))
    report = shallow.load_pretrained(state, allow_other_plan=True)
    assert not report['new'] and torch.equal(shallow.positions[4].lora.qkv.lora_B, model.positions[4].lora.qkv.lora_B)


def test_positions_without_plan_are_refused_at_another_depth():
    model = _tiny(depth=8)
    bare = {k: v for k, v in model.state_dict().items()}          # no ScaleNet metadata
    with pytest.raises(CheckpointError, match='8 positions but no depth plan'):
        _tiny(depth=6).load_pretrained(bare)
    _tiny(depth=8).load_pretrained(bare)                           # same depth: fine


def test_newer_format_version_refused():
    with pytest.raises(CheckpointError, match='newer'):
        split_checkpoint({'state_dict': {'a': torch.zeros(1)}, 'meta': {'scalenet': {'format_version': 99}}})


# ---- refusing pickled payloads -----------------------------------------------------------------------------------
def _touch(path):
    with open(path, 'w') as f:
        f.write('payload ran')


class _Payload:
    """Unpickling this calls ``_touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


class _ExecPayload(_Payload):
    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("payload ran")',))


class _GetattrPayload(_Payload):
    """Tries to reach ``ndarray.tofile`` through the getattr that mmengine's HistoryBuffer needs."""

    def __reduce__(self):
        import numpy as np
        return (getattr, (np.ndarray, 'tofile'))


@pytest.fixture(params=['function', 'exec', 'getattr'])
def payload_file(request, tmp_path):
    marker = tmp_path / 'marker'
    kind = {'function': _Payload, 'exec': _ExecPayload, 'getattr': _GetattrPayload}[request.param]
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'pos_embed': torch.zeros(1, 17, 64)}, 'extra': kind(str(marker))}, path)
    return str(path), marker


def test_safe_load_refuses_payload(payload_file):
    path, marker = payload_file
    with pytest.raises(CheckpointError, match='refused to load .*Nothing in it was executed|refused to load'):
        safe_load(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match='refused'):
        _tiny().load_pretrained(path)
    assert not marker.exists()


def test_mmengine_loaders_refuse_payload(payload_file, mmdet_scope):
    """Inside ``safe_mmengine_io()``, mmengine's own loaders (resume, load_from, tools/test.py) refuse it too."""
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
    path, marker = payload_file
    with safe_mmengine_io():
        with pytest.raises(CheckpointError, match='refused to load'):
            _load_checkpoint(path, map_location='cpu')
        with pytest.raises(CheckpointError, match='refused to load'):
            load_checkpoint(_tiny(), path)
    with pytest.raises(Exception):          # plain torch.load (weights_only by default) refuses as well
        torch.load(path)
    assert not marker.exists()


def test_mmengine_checkpoint_loads_with_allow_list(tmp_path, mmdet_scope):
    """A checkpoint as mmengine writes it (HistoryBuffer, numpy arrays and scalars) loads with weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint
    hub = MessageHub.get_instance('rel-test-hub')
    for i in range(3):
        hub.update_scalar('train/loss', float(i))
        hub.update_scalar('train/lr', np.float64(0.1 * i))
    hub.update_info('eta', np.float32(1.5))
    hub.update_info('keep_ckpt_ids', [1, 2])
    model = _tiny(depth=6)
    ckpt = {'meta': dict(epoch=2, iter=8, seed=np.int64(3), dataset_meta=dict(classes=('a', 'b')),
                         best_score=np.float64(0.5)),
            'state_dict': model.state_dict(), 'message_hub': hub.state_dict(),
            'optimizer': torch.optim.AdamW(model.parameters()).state_dict(),
            'param_schedulers': [dict(last_epoch=3, base_lrs=[0.1], _get_lr_called_within_step=False)]}
    path = str(tmp_path / 'epoch_2.pth')
    save_checkpoint(ckpt, path)
    with safe_mmengine_io():
        loaded = _load_checkpoint(path, map_location='cpu')
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert type(buf).__name__ == 'HistoryBuffer' and buf.mean() == 1.0
    assert loaded['meta']['seed'] == 3 and loaded['meta']['best_score'] == 0.5
    # without the allow-list (a fresh interpreter that does not import mmscalenet) torch refuses the same file
    code = f'import torch; torch.load({path!r}, weights_only=True)'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and 'Unsupported global' in proc.stderr


# ---- unreadable files ------------------------------------------------------------------------------------------
def test_corrupt_and_truncated_files_have_clear_errors(tmp_path):
    model = _tiny()
    good = tmp_path / 'good.pth'
    save_scalenet(model, str(good))
    data = good.read_bytes()
    (tmp_path / 'trunc.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    for name in ('trunc.pth', 'empty.pth', 'text.pth'):
        with pytest.raises(CheckpointError, match=f'{name} is not a readable PyTorch checkpoint'):
            safe_load(str(tmp_path / name))
    (tmp_path / 'bad.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
    with pytest.raises(CheckpointError, match='bad.safetensors is not a readable safetensors file'):
        safe_load(str(tmp_path / 'bad.safetensors'))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        safe_load(str(tmp_path / 'missing.pth'))


def test_load_into_wrong_model_names_the_problem(tmp_path):
    save_scalenet(_tiny(depth=6), str(tmp_path / 'm.pth'))
    other = ScaleNetViT(dict(embed_dims=32, num_layers=4, num_heads=4), img_size=32, patch_size=8)
    with pytest.raises(CheckpointError, match='width 64'):
        other.load_pretrained(str(tmp_path / 'm.pth'))
    with pytest.raises(CheckpointError, match='4 base layers'):
        ScaleNetViT(dict(TINY_ARCH, num_layers=3), img_size=32, patch_size=8).load_pretrained(str(tmp_path / 'm.pth'))


# ---- atomic writes -------------------------------------------------------------------------------------------------
_KILL_DURING_SAVE = '''
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from mmscalenet.checkpoint import atomic_write
def write(f):
    torch.save({{'w': torch.ones(1000)}}, f)
    f.flush()
    f.truncate(f.tell() // 2)          # half a file on disk ...
    os.kill(os.getpid(), signal.SIGKILL)   # ... and the process dies mid-save
atomic_write({path!r}, write)
'''


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / 'latest.pth'
    atomic_save({'w': torch.zeros(1000)}, str(path))
    proc = subprocess.run([sys.executable, '-c', _KILL_DURING_SAVE.format(root=ROOT, path=str(path))],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert torch.equal(safe_load(str(path))['w'], torch.zeros(1000))     # the previous file, intact
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != 'latest.pth']
    assert all(n.startswith('.tmp-') and not n.endswith('.pth') for n in leftovers)


def test_atomic_save_gives_ordinary_permissions(tmp_path):
    atomic_save({'w': torch.zeros(1)}, str(tmp_path / 'a.pth'))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / 'a.pth').stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_save_failure_leaves_nothing(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('cannot pickle')

    with pytest.raises(RuntimeError):
        atomic_save({'x': Unpicklable()}, str(tmp_path / 'x.pth'))
    assert list(tmp_path.iterdir()) == []
    assert os.path.isdir(tmp_path)


def test_another_plan_or_adapter_is_refused_with_the_matching_options(tmp_path):
    """A ScaleNet checkpoint into a model of another plan / adapter: one line, both values, the options that match."""
    model = _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4))
    path = str(tmp_path / 'm.pth')
    save_scalenet(model, path)
    with pytest.raises(CheckpointError) as err:
        _tiny(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4)).load_pretrained(path)
    assert 'depth 8 with sources [0, 1, 2, 3, 0, 1, 2, 3] (model: depth 6' in str(err.value)
    assert '--cfg-options model.backbone.depth=8 model.backbone.mapping=cyclic' in str(err.value)
    with pytest.raises(CheckpointError) as err:
        _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=2)).load_pretrained(path)
    assert "'bottleneck': 4" in str(err.value) and "'bottleneck': 2" in str(err.value)
    assert str(err.value).endswith('--cfg-options model.backbone.adapter.bottleneck=4')
    save_scalenet(_tiny(depth=8, adapter=None), str(tmp_path / 'n.pth'))
    with pytest.raises(CheckpointError, match='model.backbone.adapter=None model.backbone.function_preserving=False'):
        _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True).load_pretrained(
            str(tmp_path / 'n.pth'))
    save_scalenet(_tiny(depth=8, mapping='interleave', adapter=dict(type='ParallelAdapter', bottleneck=4)),
                  str(tmp_path / 'i.pth'))
    with pytest.raises(CheckpointError, match='model.backbone.mapping=interleave'):
        _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4)).load_pretrained(str(tmp_path / 'i.pth'))
    # the same plan and adapter load; another plan loads on purpose
    _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4)).load_pretrained(path)
    _tiny(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4)).load_pretrained(path, allow_other_plan=True)


def test_a_plain_model_in_the_scalenet_format_is_grown_like_a_timm_checkpoint(tmp_path):
    """The demo's "pretrained" depth-L model, saved with save_scalenet, is the start of a grown model."""
    base = randomised(_tiny(adapter=None))
    save_scalenet(base, str(tmp_path / 'base.pth'))
    grown = _tiny(depth=8, adapter=dict(type='ParallelAdapter', bottleneck=4))
    report = grown.load_pretrained(str(tmp_path / 'base.pth'))
    assert any(k.startswith('positions.7.adapter_mlp') for k in report['new'])   # fresh adapters, nothing refused
    assert torch.equal(grown.blocks[3].mlp.fc2.weight, base.blocks[3].mlp.fc2.weight)


# ---- files written by older mmscalenet (tests/data/make_fixtures.py, commit d522bc7; the ScaleNet files of both
# families: tests/test_families.py) ---------------------------------------------------------------------------------
DATA = os.path.join(ROOT, 'tests', 'data')


def test_fixture_runner_checkpoint_reads_in_mmengine(mmdet_scope):
    """The old training checkpoint (``HistoryBuffer``, numpy scalars) as resume / load_from read it; its backbone
    loads in tests/test_families.py."""
    from mmengine.runner.checkpoint import _load_checkpoint
    with safe_mmengine_io():
        obj = _load_checkpoint(os.path.join(DATA, 'scalenet_v1_runner.pth'), map_location='cpu')
    assert obj['message_hub']['log_scalars']['train/loss'].mean() == 0.75 and obj['meta']['iter'] == 4
