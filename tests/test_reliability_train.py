"""Training reliability: exact resume with randomness (demo config), the work-dir lock, one-line user errors."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

TINY = f'{ROOT}/tests/configs/rel_tiny_cls.py'
# The demo classification config (drop path 0.1, random resized crops), shrunk to ~36 training images of batch 8
# (4 iterations per epoch), a ~36-image validation set run after every epoch, and no pretrained file.
DEMO_OPTIONS = ['model.init_cfg=None', 'train_dataloader.batch_size=8',
                'train_dataloader.dataset.val_fraction=0.98', 'val_dataloader.dataset.val_fraction=0.02',
                'train_cfg.max_epochs=3', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
                'default_hooks.checkpoint.max_keep_ckpts=5', 'default_hooks.logger.interval=1']


def _env(**extra):
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))   # ROOT first, the caller's kept
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS='1', **extra)


def _train(config, work_dir, *extra, options=(), **env):
    opts = ['--cfg-options', *options] if options else []
    return subprocess.run([sys.executable, f'{ROOT}/tools/train.py', str(config), '--work-dir', str(work_dir),
                           *extra, *opts], capture_output=True, text=True, env=_env(**env), cwd=ROOT, timeout=300)


def _demo_config(tmp_path):
    """The demo config plus the test kill switch (tests/configs/rel_tiny_modules.py), nothing else changed."""
    path = tmp_path / 'demo_with_kill_switch.py'
    path.write_text(f"_base_ = ['{ROOT}/configs/demo/digits_cls_scalenet.py']\n"
                    "custom_imports = dict(imports=['mmscalenet', 'tests.configs.rel_tiny_modules'], "
                    "allow_failed_imports=False)\n"
                    "custom_hooks = [dict(type='RelKillSwitchHook')]\n")
    return path


def _checkpoint(path):
    from mmscalenet.checkpoint import safe_load   # weights_only, mmengine's checkpoint types allowed
    return safe_load(str(path))


def _tensors(obj, prefix=''):
    """Every tensor in a checkpoint's model and optimizer state, by path."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f'{prefix}.{k}'))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f'{prefix}.{i}'))
    return out


def test_kill_and_resume_of_the_demo_config_is_bit_identical(tmp_path):
    config = _demo_config(tmp_path)
    full = _train(config, tmp_path / 'full', options=DEMO_OPTIONS)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _train(config, tmp_path / 'killed', options=DEMO_OPTIONS, REL_KILL_AT_ITER='6')   # epoch 2, batch 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / 'killed' / 'epoch_1.pth').exists() and not (tmp_path / 'killed' / 'epoch_2.pth').exists()
    resumed = _train(config, tmp_path / 'killed', '--resume', options=DEMO_OPTIONS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    a, b = _checkpoint(tmp_path / 'full' / 'epoch_3.pth'), _checkpoint(tmp_path / 'killed' / 'epoch_3.pth')
    ta = _tensors({'state_dict': a['state_dict'], 'optimizer': a['optimizer']})
    tb = _tensors({'state_dict': b['state_dict'], 'optimizer': b['optimizer']})
    assert ta.keys() == tb.keys() and len(ta) > 100
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert different == []
    assert a['scalenet_resume']['sampler'] == dict(epoch=3, iter=12, batches_in_epoch=0)
    assert {'torch', 'numpy', 'python'} <= set(a['scalenet_resume']['rng'])
    # the run is random: drop path and crops differ between epochs 1 and 3 of the same run
    one = _checkpoint(tmp_path / 'full' / 'epoch_1.pth')
    assert not torch.equal(one['state_dict']['backbone.pos_embed'], a['state_dict']['backbone.pos_embed'])


def test_rng_states_round_trip():
    import random

    import numpy as np

    from mmscalenet.engine.hooks import rng_state, set_rng_state
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


# ---- the work-dir lock -----------------------------------------------------------------------------------------
_HOLDER = ('import sys, time; sys.path.insert(0, sys.argv[1]); from mmscalenet.tools_common import WorkDirLock; '
           'WorkDirLock(sys.argv[2]).acquire(); print("locked", flush=True); time.sleep(120)')


def test_second_run_in_a_busy_work_dir_stops_and_a_dead_lock_is_taken_over(tmp_path):
    work = tmp_path / 'work'
    holder = subprocess.Popen([sys.executable, '-c', _HOLDER, ROOT, str(work)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        assert holder.stdout.readline().strip() == 'locked'
        busy = _train(TINY, work, options=['train_cfg.max_epochs=1'])
        assert busy.returncode == 1
        line = busy.stderr.strip()
        assert line.startswith('error: work dir') and f'pid {holder.pid}' in line and 'started' in line, line
        assert '\n' not in line and not (work / 'epoch_1.pth').exists()
    finally:
        holder.kill()
        holder.wait()
    assert (work / '.mmscalenet.lock').exists()                 # left behind by the killed holder
    taken = _train(TINY, work, options=['train_cfg.max_epochs=1'])
    assert taken.returncode == 0, taken.stderr[-3000:]
    assert f'taking over the lock left by a run that is no longer running (pid {holder.pid}' in taken.stderr
    assert (work / 'epoch_1.pth').exists() and not (work / '.mmscalenet.lock').exists()   # released on exit


def test_lock_released_when_training_fails(tmp_path):
    proc = _train(TINY, tmp_path, options=['train_cfg.max_epochs=1'], REL_LOSS_SCALE='nan')
    assert proc.returncode == 1 and 'non-finite loss' in proc.stderr
    assert not (tmp_path / '.mmscalenet.lock').exists()


def test_two_runs_started_together_never_share_the_work_dir(tmp_path):
    cmd = [sys.executable, f'{ROOT}/tools/train.py', TINY, '--work-dir', str(tmp_path), '--cfg-options',
           'train_cfg.max_epochs=1']
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert 'is in use by another run' in refused


# ---- one-line user errors of the training entry point -----------------------------------------------------------
DEMO = f'{ROOT}/configs/demo/digits_cls_scalenet.py'


@pytest.mark.parametrize('config, option, expected', [
    (DEMO, 'model.init_cfg.checkpoint=/nonexistent/base.pth', 'model.init_cfg.checkpoint file not found: '
                                                               '/nonexistent/base.pth'),
    (TINY, 'train_dataloader.batch_size=0', 'train_dataloader.batch_size must be a positive integer, got 0'),
    (TINY, 'optim_wrapper.optimizer.lr=nan', 'optim_wrapper.optimizer.lr must be a finite number >= 0, got nan'),
])
def test_training_user_errors_are_one_line(tmp_path, config, option, expected):
    proc = _train(config, tmp_path / 'w', options=[option] if option else ())
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith('error: ') and expected in err and '\n' not in err and 'Traceback' not in err, err
    assert not (tmp_path / 'w').exists()


def test_kill_while_writing_the_pointer_keeps_the_previous_one(tmp_path):
    killed = _train(TINY, tmp_path, options=['train_cfg.max_epochs=3'], REL_KILL_IN_POINTER='2')
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / 'epoch_2.pth').exists()                     # the checkpoint itself was complete
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')   # the old pointer, whole
    # tools/train.py ran inside safe_mmengine_io(); this process (no such block open) has mmengine's plain open()
    from mmscalenet.checkpoint.mmengine_io import _checkpoint_hook_open, safe_mmengine_io
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    assert 'open' not in vars(checkpoint_hook)
    with safe_mmengine_io():
        assert checkpoint_hook.open is _checkpoint_hook_open


def test_kill_and_resume_of_an_iteration_based_run_is_bit_identical(tmp_path):
    """IterBasedTrainLoop + InfiniteSampler + drop path: the RNG states come back after mmengine has skipped the
    trained batches (the synthetic data itself draws no global random numbers, so this checks the restore, not
    its placement after the skip)."""
    config = tmp_path / 'iter_cfg.py'
    config.write_text(f"_base_ = ['{TINY}']\n"
                      "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=6, val_interval=100)\n"
                      "param_scheduler = []\n"
                      "default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2), "
                      "logger=dict(log_metric_by_epoch=False))\n"
                      "log_processor = dict(by_epoch=False)\n"
                      "model = dict(backbone=dict(drop_path_rate=0.3))\n"
                      "train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True, "
                      "seed=0))\n")
    full = _train(config, tmp_path / 'full')
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _train(config, tmp_path / 'killed', REL_KILL_AT_ITER='3')
    assert killed.returncode == -signal.SIGKILL and (tmp_path / 'killed' / 'iter_2.pth').exists()
    resumed = _train(config, tmp_path / 'killed', '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = _checkpoint(tmp_path / 'full' / 'iter_6.pth')['state_dict']
    b = _checkpoint(tmp_path / 'killed' / 'iter_6.pth')['state_dict']
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
