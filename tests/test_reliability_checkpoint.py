"""Checkpoint reliability: NaN refusal, metadata validated against the tensors, SHA-256, output paths, 0-dim gates.

Every malformed file must give one ``CheckpointError`` naming the file (and the field), before a model is built.
"""
import json
import os

import pytest
import torch

from conftest import ROOT, TINY_ARCH, tool_main
from mmscalenet.checkpoint import (CheckpointError, load_into_backbone, load_scalenet, read_checkpoint,
                                   save_safetensors, save_scalenet, scalenet_meta, tensor_digest)
from mmscalenet.models import ScaleNetViT




def _tiny(**kw):
    kw.setdefault('img_size', 32)
    kw.setdefault('patch_size', 8)
    kw.setdefault('depth', 6)
    kw.setdefault('adapter', dict(type='LoRA', rank=2))
    model = ScaleNetViT(TINY_ARCH, **kw)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _write(path, state, meta):
    """A file in the ScaleNet layout with hand-made tensors / metadata (no checksum unless given)."""
    path = str(path)
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()},
                  path, metadata={'scalenet': meta if isinstance(meta, str) else json.dumps(meta)})
    else:
        torch.save({'state_dict': state, 'meta': {'scalenet': meta}}, path)
    return path


def _parts(model):
    meta = scalenet_meta(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, meta


# ---- non-finite tensors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_nan_tensor_refused_at_load_with_its_name(tmp_path, suffix):
    state, meta = _parts(_tiny())
    state['blocks.1.mlp.fc1.weight'][0, 0] = float('nan')
    state['pos_embed'][0, 0, 0] = float('inf')
    path = _write(tmp_path / f'nan{suffix}', state, meta)
    with pytest.raises(CheckpointError) as err:
        load_scalenet(path)
    text = str(err.value)
    assert path in text and 'blocks.1.mlp.fc1.weight' in text and 'pos_embed' in text and '\n' not in text
    model, _ = load_scalenet(path, allow_nonfinite=True)          # the explicit opt-in
    assert torch.isnan(model.blocks[1].mlp.fc1.weight[0, 0])
    # the init_cfg path (Pretrained) refuses it too, and accepts the keyword
    fresh = ScaleNetViT(TINY_ARCH, depth=6, adapter=dict(type='LoRA', rank=2), img_size=32, patch_size=8,
                        init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='blocks.1.mlp.fc1.weight'):
        fresh.init_weights()
    load_into_backbone(fresh, path, allow_nonfinite=True)


def test_expand_and_export_refuse_nan_and_export_check_fails_on_nan(tmp_path, capsys):
    state, meta = _parts(_tiny())
    state['blocks.0.attn.qkv.weight'][3, 3] = float('nan')
    src = _write(tmp_path / 'nan.pth', state, meta)
    expand, export = tool_main('expand'), tool_main('export')
    with pytest.raises(SystemExit) as err:
        expand([src, str(tmp_path / 'grown.pth'), '--arch', 'deit-tiny', '--depth', '24'])
    assert 'blocks.0.attn.qkv.weight' in str(err.value) and 'NaN' in str(err.value)
    assert export([src, str(tmp_path / 'out.pth')]) == 1
    assert 'blocks.0.attn.qkv.weight' in capsys.readouterr().err
    # allowed at load, the NaN reaches the output: the NaN-aware equality check refuses to write it
    assert export([src, str(tmp_path / 'out.pth'), '--allow-nonfinite']) == 1
    assert 'differs from the ScaleNet model by nan' in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists() and not (tmp_path / 'grown.pth').exists()


def test_export_refuses_to_write_nonfinite_tensors(tmp_path, capsys):
    model = _tiny()
    with torch.no_grad():   # finite LoRA factors whose merged product overflows float32
        model.positions[0].lora['qkv'].lora_A.fill_(1e20)
        model.positions[0].lora['qkv'].lora_B.fill_(1e20)
    src = str(tmp_path / 'overflow.pth')
    save_scalenet(model, src)
    export = tool_main('export')
    assert export([src, str(tmp_path / 'o.pth'), '--skip-check']) == 1
    err = capsys.readouterr().err
    assert 'o.pth' in err and 'blocks.0.attn.qkv.weight' in err and 'NaN or infinite' in err
    assert not (tmp_path / 'o.pth').exists()
    assert export([src, str(tmp_path / 'o.pth'), '--skip-check', '--allow-nonfinite']) == 0   # explicit opt-in


# ---- metadata validated against the tensors -------------------------------------------------------------------
def _malformed(kind, state, meta):
    state, meta = dict(state), json.loads(json.dumps(meta))
    if kind == 'huge-embed-dims':
        meta['arch']['embed_dims'] = 2 ** 40
        return state, meta, 'arch.embed_dims'
    if kind == 'no-img-size':
        del meta['img_size']
        return state, meta, 'img_size'
    if kind == 'list-metadata':
        return state, [1, 2, 3], 'list'
    if kind == 'wrong-img-size':
        meta['img_size'] = [64, 64]
        return state, meta, 'img_size'
    if kind == 'wrong-shape':
        state['positions.2.lora.fc1.lora_A'] = torch.zeros(3, 64)
        return state, meta, 'positions.2.lora.fc1.lora_A'
    if kind == 'int-tensor':
        state['norm.weight'] = torch.ones(64, dtype=torch.int64)
        return state, meta, 'norm.weight'
    if kind == 'bool-tensor':
        state['blocks.0.norm1.weight'] = torch.ones(64, dtype=torch.bool)
        return state, meta, 'blocks.0.norm1.weight'
    if kind == 'mlp-ratio-nan':
        meta['arch']['mlp_ratio'] = float('nan')
        return state, meta, 'arch.mlp_ratio'
    if kind == 'sources-out-of-range':
        meta['sources'] = [0, 1, 2, 3, 9, 0]
        return state, meta, 'sources'
    if kind == 'heads-string':
        meta['arch']['num_heads'] = '4'
        return state, meta, 'arch.num_heads'
    if kind == 'adapter-alpha-inf':
        meta['adapter']['alpha'] = float('inf')
        return state, meta, 'adapter.alpha'
    if kind == 'too-many-layers':
        meta['arch']['num_layers'] = 5
        meta['base_depth'] = 5
        return state, meta, 'arch.num_layers'
    raise AssertionError(kind)


MALFORMED = ['huge-embed-dims', 'no-img-size', 'list-metadata', 'wrong-img-size', 'wrong-shape', 'int-tensor',
             'bool-tensor', 'mlp-ratio-nan', 'sources-out-of-range', 'heads-string', 'adapter-alpha-inf',
             'too-many-layers']


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('kind', MALFORMED)
def test_malformed_metadata_gives_one_line_naming_file_and_field(tmp_path, kind, suffix, capsys):
    state, meta, field = _malformed(kind, *_parts(_tiny()))
    path = _write(tmp_path / f'bad{suffix}', state, meta)
    with pytest.raises(CheckpointError) as err:
        load_scalenet(path)
    text = str(err.value)
    assert path in text and field in text and '\n' not in text, text
    assert tool_main('export')([path, str(tmp_path / 'o.pth')]) == 1      # the tool: one line, exit 1
    out = capsys.readouterr().err.strip()
    assert out.startswith('error: ') and path in out and '\n' not in out, out


def test_model_is_not_built_before_metadata_is_checked(tmp_path, monkeypatch):
    state, meta, _ = _malformed('huge-embed-dims', *_parts(_tiny()))
    path = _write(tmp_path / 'huge.safetensors', state, meta)
    import mmscalenet.models.vit as vit
    built = []
    monkeypatch.setattr(vit.ScaleNetViT, '__init__', lambda self, *a, **k: built.append(k) or 1 / 0)
    with pytest.raises(CheckpointError, match='arch.embed_dims'):
        read_checkpoint(path)
    assert built == []


# ---- SHA-256 ---------------------------------------------------------------------------------------------------
def _flip_inside(path, pattern):
    data = bytearray(open(path, 'rb').read())
    at = data.find(pattern)
    assert at > 0, 'tensor bytes not found'
    data[at + len(pattern) // 2] ^= 0x01
    open(path, 'wb').write(bytes(data))


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_flipped_bit_in_a_tensor_is_found(tmp_path, suffix):
    model = _tiny()
    with torch.no_grad():
        model.pos_embed.copy_(torch.arange(model.pos_embed.numel(), dtype=torch.float32).view_as(model.pos_embed))
    path = str(tmp_path / f'm{suffix}')
    save_scalenet(model, path)
    load_scalenet(path)                                            # intact: loads
    _flip_inside(path, torch.arange(20, 40, dtype=torch.float32).numpy().tobytes())
    with pytest.raises(CheckpointError) as err:
        load_scalenet(path)
    assert path in str(err.value) and 'SHA-256' in str(err.value)
    loaded, _ = load_scalenet(path, verify_checksum=False)          # the explicit skip
    assert not torch.equal(loaded.pos_embed, model.pos_embed)
    with pytest.raises(CheckpointError, match='SHA-256'):
        load_into_backbone(_tiny(), path)


def test_files_without_checksum_still_load(tmp_path):
    state, meta = _parts(_tiny())
    assert 'sha256' not in meta
    for suffix in ('.pth', '.safetensors'):
        model, _ = load_scalenet(_write(tmp_path / f'old{suffix}', state, meta))
        assert torch.equal(model.pos_embed, state['pos_embed'])


def test_checksum_is_stored_and_covers_every_tensor(tmp_path):
    model = _tiny()
    save_scalenet(model, tmp_path / 'm.pth', head={'weight': torch.ones(3, 64), 'bias': torch.zeros(3)})
    saved = torch.load(tmp_path / 'm.pth', weights_only=True)
    assert saved['meta']['scalenet']['sha256'] == tensor_digest(saved['state_dict'])
    state = dict(saved['state_dict'])
    state['head.bias'] = torch.tensor([0.0, 0.0, 1e-30])
    assert tensor_digest(state) != saved['meta']['scalenet']['sha256']
    save_safetensors({'a': torch.ones(2)}, {'k': 1}, str(tmp_path / 'x.safetensors'), meta_key='other')
    obj = read_checkpoint(str(tmp_path / 'x.safetensors'))
    assert obj[0]['a'].tolist() == [1.0, 1.0]


# ---- 0-dim gates -----------------------------------------------------------------------------------------------
def test_0_dim_gates_load_into_1_element_gates(tmp_path):
    """Gates are (1,) vectors (FSDP2 cannot shard 0-dim parameters); files with 0-dim gates still load."""
    model = _tiny(function_preserving=True)
    state, meta = _parts(model)
    gates = [k for k in state if k.endswith(('gate_attn', 'gate_mlp'))]
    assert gates and all(state[k].shape == (1,) for k in gates)
    scalars = {k: (v.reshape(()) if k in gates else v) for k, v in state.items()}
    for suffix in ('.pth', '.safetensors'):
        path = _write(tmp_path / f'scalar_gates{suffix}', scalars, meta)
        loaded, _ = load_scalenet(path)
        fresh = _tiny(function_preserving=True)
        with torch.no_grad():
            for p in fresh.parameters():
                p.zero_()
        load_into_backbone(fresh, path)
        for key in gates:
            assert torch.equal(loaded.state_dict()[key], state[key]), key
            assert torch.equal(fresh.state_dict()[key], state[key]), key
    assert tool_main('export')([path, str(tmp_path / 'timm.pth')]) == 0


# ---- output paths ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('tool', ['expand', 'export'])
def test_unwritable_outputs_refused_before_work(tmp_path, tool, capsys):
    model = _tiny()
    src = str(tmp_path / 'src.pth')
    save_scalenet(model, src)
    (tmp_path / 'afile').write_text('x')
    (tmp_path / 'adir').mkdir()
    extra = ['--arch', 'deit-tiny', '--depth', '24'] if tool == 'expand' else ['--format', 'scalenet']
    cases = {str(tmp_path / 'afile' / 'out.pth'): 'is a file', str(tmp_path / 'adir'): 'is a directory',
             '/proc/mmscalenet-test/out.pth': 'cannot write'}
    for dst, expected in cases.items():
        try:
            code = tool_main(tool)([src, dst, *extra])
            text = capsys.readouterr().err
        except SystemExit as err:
            code, text = 1, str(err.code)
        assert code == 1 and expected in text and '\n' not in text.strip(), text
    assert sorted(os.listdir(tmp_path)) == ['adir', 'afile', 'src.pth'] and not os.listdir(tmp_path / 'adir')


def test_write_error_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    src = str(tmp_path / 'src.pth')
    save_scalenet(_tiny(), src)

    def full_disk(obj, f):
        f.write(b'partial')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', full_disk)
    assert tool_main('export')([src, str(tmp_path / 'o.pth'), '--format', 'scalenet']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: writing') and 'No space left on device' in err and '\n' not in err
    assert sorted(os.listdir(tmp_path)) == ['src.pth']


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_file_size_limit_during_export_is_one_line(tmp_path, suffix):
    """``ulimit -f``: the kernel refuses the write (EFBIG); torch.save reports it as a RuntimeError, which the
    tools still print as one line, and the temporary file is removed."""
    import resource
    import subprocess
    import sys
    src = str(tmp_path / 'src.pth')
    save_scalenet(_tiny(), src)
    dst = tmp_path / f'out{suffix}'
    proc = subprocess.run([sys.executable, f'{ROOT}/tools/export.py', src, str(dst), '--format', 'scalenet'],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)))
    err = proc.stderr.strip()
    assert proc.returncode == 1 and err.startswith('error: writing') and 'File too large' in err, err
    assert '\n' not in err and sorted(os.listdir(tmp_path)) == ['src.pth']
