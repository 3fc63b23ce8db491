"""tools/expand.py: writes a loadable grown checkpoint, prints plan and table, writes nothing on bad input."""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_ARCH, timm_vit
from mmscalenet.models import ScaleNetViT


def _run(*args):
    return subprocess.run([sys.executable, f'{ROOT}/tools/expand.py', *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope='module')
def deit_tiny_file(tmp_path_factory):
    import timm
    torch.manual_seed(0)
    model = timm.create_model('deit_tiny_patch16_224', pretrained=False).eval()
    path = tmp_path_factory.mktemp('ckpt') / 'deit_tiny.pth'
    torch.save({'model': model.state_dict()}, path)
    return path, model


def test_expand_writes_grown_checkpoint(tmp_path, deit_tiny_file):
    src, ref = deit_tiny_file
    dst = tmp_path / 'grown.pth'
    res = _run(src, dst, '--arch', 'deit-tiny', '--depth', '24', '--mapping', 'interleave')
    assert res.returncode == 0, res.stderr
    assert 'position  23 <- base layer  11  (inserted)' in res.stdout
    assert '| unique |' in res.stdout and f'wrote {dst}' in res.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['scalenet']['sources'][:4] == [0, 0, 1, 1]
    assert 'head.weight' in saved['state_dict']
    assert not any(k.startswith('blocks.12.') for k in saved['state_dict'])   # stored once
    # tools/expand.py's default adapter is the shipped ViT configs' (bottleneck 16), not the constructor's (8)
    model = ScaleNetViT('deit-tiny', depth=24, mapping='interleave',
                        adapter=dict(type='ParallelAdapter', bottleneck=16)).eval()
    model.load_pretrained(str(dst))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():  # zero-initialised adapters: the grown model equals the untied copy; check first layer
        assert torch.equal(model.blocks[3].attn.qkv.weight, ref.blocks[3].attn.qkv.weight)
        assert model(x)[0].shape == (1, 192)


@pytest.mark.parametrize('extra, message', [
    (['--depth', '8'], 'smaller than the base depth'),
    (['--depth', '13', '--mapping', '0,1,2'], 'has 3 entries'),
    (['--depth', '12', '--arch', 'deit-small'], 'does not match the model'),
])
def test_expand_bad_input_writes_nothing(tmp_path, deit_tiny_file, extra, message):
    src, _ = deit_tiny_file
    dst = tmp_path / 'out.pth'
    args = [src, dst, '--arch', 'deit-tiny'] + extra
    res = _run(*args)
    assert res.returncode != 0 and message in res.stderr
    assert not dst.exists()


def test_expand_missing_and_corrupt_source(tmp_path):
    dst = tmp_path / 'out.pth'
    res = _run(tmp_path / 'nope.pth', dst, '--depth', '24')
    assert res.returncode != 0 and 'not found' in res.stderr and not dst.exists()
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x00' * 64)
    res = _run(bad, dst, '--depth', '24')
    assert res.returncode != 0 and 'not a readable' in res.stderr and not dst.exists()
    assert list(tmp_path.iterdir()) == [bad]        # no temporary file left behind


def test_expand_help():
    res = _run('--help')
    assert res.returncode == 0 and '--mapping' in res.stdout and 'timm:NAME' in res.stdout


def test_expand_the_foil_writes_independent_copies_that_start_as_the_base(tmp_path, deit_tiny_file):
    """--growth copy_zero: 24 stored layers (no adapters), the inserted copies' output projections zeroed, so the
    file loads into the progressive config's backbone and computes the pretrained DeiT-Ti."""
    src, ref = deit_tiny_file
    dst = tmp_path / 'foil.pth'
    res = _run(src, dst, '--arch', 'deit-tiny', '--depth', '24', '--growth', 'copy_zero')
    assert res.returncode == 0, res.stderr
    assert 'growth=copy_zero: every position stores its own copy' in res.stdout
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['scalenet']['growth'] == 'copy_zero' and saved['meta']['scalenet']['adapter'] is None
    assert torch.equal(saved['state_dict']['blocks.23.attn.qkv.weight'], ref.blocks[11].attn.qkv.weight)
    assert not saved['state_dict']['blocks.23.mlp.fc2.weight'].any()
    model = ScaleNetViT('deit-tiny', depth=24, growth='copy').eval()
    model.load_pretrained(str(dst))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], ref.forward_head(ref.forward_features(x), pre_logits=True),
                                   rtol=1e-4, atol=1e-4)
