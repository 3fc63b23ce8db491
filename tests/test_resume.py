"""Crash safety: a SIGKILL'd training restarted with --resume ends with the same weights as an uninterrupted run."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

CONFIG = f'{ROOT}/tests/configs/rel_tiny_cls.py'
OPTIONS = ['--cfg-options', 'train_cfg.max_epochs=3', 'param_scheduler.1.end=3']


def _train(work_dir, *extra, **env):
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS='1', **env)
    return subprocess.run([sys.executable, f'{ROOT}/tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra,
                           *OPTIONS], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _weights(path):
    from mmscalenet.checkpoint import safe_load   # weights_only, mmengine's checkpoint types allowed
    return safe_load(str(path))['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    work = tmp_path_factory.mktemp('full')
    proc = _train(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _weights(work / 'epoch_3.pth')


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigkill_mid_epoch_then_resume(tmp_path, uninterrupted):
    killed = _train(tmp_path, REL_KILL_AT_ITER='3')          # epoch 2, first batch; epoch_1.pth exists
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / 'epoch_1.pth').exists() and not (tmp_path / 'epoch_2.pth').exists()
    resumed = _train(tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    _assert_same(_weights(tmp_path / 'epoch_3.pth'), uninterrupted)


def test_sigkill_during_checkpoint_save_then_resume(tmp_path, uninterrupted):
    killed = _train(tmp_path, REL_KILL_IN_SAVE='2')          # dies while epoch_2.pth is being written
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / 'epoch_2.pth').exists()            # no half file under the checkpoint's name
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    _weights(tmp_path / 'epoch_1.pth')                        # the previous checkpoint is intact
    assert any(p.name.startswith('.tmp-epoch_2.pth') for p in tmp_path.iterdir())   # the unfinished temp file
    resumed = _train(tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same(_weights(tmp_path / 'epoch_3.pth'), uninterrupted)


def test_resume_survives_a_broken_last_checkpoint_pointer(tmp_path):
    from mmscalenet.tools_common import latest_checkpoint
    for n in (1, 2):
        (tmp_path / f'epoch_{n}.pth').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text('')             # killed while writing the pointer
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').write_text('/moved/away/epoch_1.pth')   # the work dir was moved or copied
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').unlink()
    (tmp_path / 'iter_30.pth').write_bytes(b'x')               # iteration-based runs: the highest count wins
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_30.pth')
    assert latest_checkpoint(str(tmp_path / 'nothing')) is None


def test_kill_during_a_save_with_max_keep_1_keeps_the_previous_checkpoint(tmp_path):
    """mmengine removes the oldest checkpoint before writing the new one; with ``max_keep_ckpts=1`` a kill during
    the second save left no checkpoint at all. Now the new file is written first."""
    killed = _train(tmp_path, '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1', REL_KILL_IN_SAVE='2')
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert 'head.bias' in _weights(tmp_path / 'epoch_1.pth')                # complete and loadable
    done = _train(tmp_path, '--resume', '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'resumed epoch: 1' in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_3.pth']     # the old ones go afterwards


def test_resume_over_checkpoint_files_without_a_usable_one_refuses(tmp_path):
    """Only an unfinished temporary file and a pointer to a deleted checkpoint: --resume stops in one line instead
    of training from scratch, and creates nothing."""
    (tmp_path / '.tmp-epoch_2.pth.abc.part').write_bytes(b'half')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _train(tmp_path, '--resume')
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'no complete checkpoint' in lines[0] and 'last_checkpoint' in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    empty = tmp_path / 'fresh'
    empty.mkdir()
    assert 'training from scratch' in _train(empty, '--resume').stderr


def test_resume_with_another_backbone_is_one_line_with_the_options(tmp_path):
    """--resume from a run of another adapter bottleneck, depth or growth: refused before anything is built, naming
    what differs and the --cfg-options that build the saved backbone (mmengine would stop in load_state_dict)."""
    from mmengine.config import Config

    from mmscalenet.checkpoint import META_KEY, scalenet_meta
    from mmscalenet.models import ScaleNetViT
    from mmscalenet.run_checks import check_resume_fits
    from mmscalenet.tools_common import ToolError
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0)
    saved = ScaleNetViT(arch, depth=4, adapter=dict(type='ParallelAdapter', bottleneck=4), img_size=32, patch_size=8)
    ckpt = str(tmp_path / 'iter_10.pth')
    torch.save({'meta': {META_KEY: scalenet_meta(saved)}, 'state_dict': {}}, ckpt)
    backbone = dict(type='ScaleNetViT', arch=arch, depth=4, img_size=32, patch_size=8,
                    adapter=dict(type='ParallelAdapter', bottleneck=4))
    check_resume_fits(Config(dict(model=dict(backbone=backbone))), ckpt, 'same.py')   # the same model: fine
    for change, expect in ((dict(adapter=dict(type='ParallelAdapter', bottleneck=8)), 'model.backbone.adapter.'),
                           (dict(depth=6), 'model.backbone.depth=4'),
                           (dict(growth='copy', adapter=None), 'model.backbone.growth=shared'),
                           (dict(img_size=64), 'model.backbone.img_size=')):
        with pytest.raises(ToolError) as err:
            check_resume_fits(Config(dict(model=dict(backbone=dict(backbone, **change)))), ckpt, 'other.py')
        assert expect in str(err.value) and '\n' not in str(err.value), (change, str(err.value))
