"""Errors before the work, in one line, nothing left behind (issue 25, items 5 to 7): absurd sizes from flags, loop
and loader values, unwritable work dirs and lock paths, unreadable images, output paths of test.py / infer.py
checked before the evaluation, ``--force`` for existing outputs, NaN weights warned at test time."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, tool_main

CONFIG = f'{ROOT}/tests/configs/rel_tiny_cls.py'


def _run(tool, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])),
               OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, f'{ROOT}/tools/{tool}.py', *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def _main(tool, *args):
    """``tools/<tool>.py``'s main in this process (no interpreter start-up): ``(status, stderr)``, read through
    ``capsys`` by :func:`_one_line_here`. The first check of each test runs the real process (:func:`_run`)."""
    return tool_main(tool)([str(a) for a in args])


def _one_line_here(capsys, tool, *args, words):
    capsys.readouterr()
    status = _main(tool, *args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 1, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith('error: '), err[-3000:]
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def _one_line(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr[-3000:]
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.mark.parametrize('option, words', [
    ('model.backbone.adapter.bottleneck=1000000000', ('GiB to train', 'this machine has')),
    ('model.backbone.depth=1000000', ('depth=1000000', 'at most 4096')),
    ('train_cfg.max_epochs=0', ('train_cfg.max_epochs', '>= 1')),
    ('train_cfg.max_epochs=-1', ('train_cfg.max_epochs',)),
    ('train_cfg.max_epochs=3.5', ('train_cfg.max_epochs', '3.5')),
    ('train_dataloader.num_workers=-1', ('train_dataloader.num_workers', '>= 0')),
    ('train_cfg.val_interval=0', ('train_cfg.val_interval',)),
])
def test_training_values_are_refused_before_the_work_dir_exists(tmp_path, capsys, option, words):
    """In-process (the checks run before any runner): one line, status 1, no work dir."""
    work = tmp_path / 'w'
    assert _main('train', CONFIG, '--work-dir', work, '--cfg-options', option) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and all(w in lines[0] for w in words), lines
    assert not work.exists()


def test_model_size_estimate_without_building():
    from mmscalenet.models import ScaleNetViT
    from mmscalenet.run_checks import backbone_parameters, check_loop_values, check_model_size
    from mmscalenet.tools_common import ToolError
    bb = dict(type='ScaleNetViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0), depth=4,
              adapter=dict(type='ParallelAdapter', bottleneck=4))
    real = sum(p.numel() for p in ScaleNetViT(**{k: v for k, v in bb.items() if k != 'type'}).parameters())
    assert backbone_parameters(bb) == real
    huge = dict(bb, adapter=dict(type='ParallelAdapter', bottleneck=10 ** 9))   # 2.6e11 parameters: not allocated
    assert backbone_parameters(huge) > 2 * 10 ** 11
    cfg = dict(model=dict(backbone=dict(bb, adapter=dict(type='ParallelAdapter', bottleneck=10 ** 6))))
    check_model_size(cfg, 'c.py', memory=1 << 40)                     # 1 TiB holds it
    with pytest.raises(ToolError, match=r'c.py: the backbone asks for about .* GiB to train'):
        check_model_size(cfg, 'c.py', memory=1 << 30)
    with pytest.raises(ToolError, match=r"train_cfg.max_epochs must be an integer >= 1, got '3'"):
        check_loop_values(dict(train_cfg=dict(max_epochs='3')), 'c.py')   # a string in a config file


def test_read_only_work_dir_and_a_lock_path_that_is_a_folder(tmp_path, capsys):
    _one_line(_run('train', CONFIG, '--work-dir', '/proc/mmscalenet-work'), 'work dir', '/proc')
    work = tmp_path / 'w'
    (work / '.mmscalenet.lock').mkdir(parents=True)
    _one_line_here(capsys, 'train', CONFIG, '--work-dir', work, words=('lock path', 'is a folder'))
    assert sorted(p.name for p in work.iterdir()) == ['.mmscalenet.lock']


@pytest.mark.parametrize('workers', [0, 1])
@pytest.mark.parametrize('content', [b'', b'\xff\xd8\xff\xe0\x00\x10JFIF\x00'])
def test_unreadable_image_in_a_class_folder_is_one_line_naming_it(tmp_path, capsys, content, workers):
    """A zero-byte or truncated JPEG: one line naming the file (also through a DataLoader worker), no work dir."""
    root = tmp_path / 'data'
    (root / 'train' / 'a').mkdir(parents=True)
    (root / 'train' / 'a' / 'broken.jpg').write_bytes(content)
    config = tmp_path / 'folder.py'
    config.write_text(
        f"_base_ = [{CONFIG!r}]\n"
        f"train_dataloader = dict(_delete_=True, batch_size=1, num_workers={workers}, "
        f"sampler=dict(type='DefaultSampler', shuffle=False), "
        f"dataset=dict(type='ScaleNetImageNet', data_root={str(root)!r}, split='train', pipeline=["
        f"dict(type='LoadImagePIL'), dict(type='TimmClsTransform', input_size=32, is_training=False, crop_pct=1.0), "
        f"dict(type='PackClsInputs')]))\n")
    work = tmp_path / 'w'
    if workers and content:     # one case through the real process, the others in this one
        _one_line(_run('train', config, '--work-dir', work), 'cannot read image', 'broken.jpg')
    else:
        _one_line_here(capsys, 'train', config, '--work-dir', work, words=('cannot read image', 'broken.jpg'))
    assert not work.exists()


def test_missing_data_root_and_empty_split_are_one_line(tmp_path, capsys):
    root = tmp_path / 'data'
    (root / 'train').mkdir(parents=True)
    for data_root, words in ((tmp_path / 'nothing', ('dataset root not found', 'nothing')),
                             (root, ('no class sub-folders',))):
        config = tmp_path / 'folder.py'
        config.write_text(
            f"_base_ = [{CONFIG!r}]\n"
            f"train_dataloader = dict(_delete_=True, batch_size=1, num_workers=0, "
            f"sampler=dict(type='DefaultSampler', shuffle=False), "
            f"dataset=dict(type='ScaleNetImageNet', data_root={str(data_root)!r}, split='train', pipeline=[]))\n")
        work = tmp_path / 'w'
        if data_root == root:
            _one_line(_run('train', config, '--work-dir', work), *words)
        else:
            _one_line_here(capsys, 'train', config, '--work-dir', work, words=words)
        assert not work.exists()


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp('trained')
    proc = _run('train', CONFIG, '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / 'epoch_1.pth'


def test_test_tool_checks_outputs_before_evaluating(tmp_path, capsys, trained):
    work = tmp_path / 'w'
    _one_line(_run('test', CONFIG, trained, '--work-dir', work, '--out', '/proc/x/preds.pkl'), '/proc')
    (tmp_path / 'dir.pkl').mkdir()
    _one_line_here(capsys, 'test', CONFIG, trained, '--work-dir', work, '--out', tmp_path / 'dir.pkl',
                   words=('is a directory',))
    _one_line_here(capsys, 'test', CONFIG, trained, '--work-dir', '/proc/w', words=('work dir',))
    _one_line_here(capsys, 'test', CONFIG, trained, '--work-dir', work, '--cfg-options',
                   'test_dataloader.num_workers=-1', words=('num_workers',))
    assert not work.exists()
    out = tmp_path / 'preds.pkl'
    out.write_bytes(b'old')
    _one_line_here(capsys, 'test', CONFIG, trained, '--work-dir', work, '--out', out, words=('exists', '--force'))
    assert out.read_bytes() == b'old'


def test_test_tool_warns_about_nan_weights(tmp_path, trained):
    from mmscalenet.checkpoint import safe_load
    obj = safe_load(str(trained))
    key = next(k for k in obj['state_dict'] if k.endswith('qkv.weight'))
    obj['state_dict'][key][0, 0] = float('nan')
    bad = tmp_path / 'nan.pth'
    torch.save(obj, bad)
    proc = _run('test', CONFIG, bad, '--work-dir', tmp_path / 'w')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'warning: {bad}: 1 tensor(s) hold NaN or infinite values ({key})' in proc.stderr


def test_infer_tool_checks_outputs_before_the_model(tmp_path, capsys):
    """infer.py's --out and --show-dir are checked before any model is built (the checkpoint is not even read)."""
    fake = tmp_path / 'ckpt.pth'
    fake.write_bytes(b'not read')
    img = tmp_path / 'img.png'
    from PIL import Image
    Image.new('RGB', (8, 8)).save(img)
    cls_config = f'{ROOT}/configs/demo/digits_cls_scalenet.py'
    _one_line(_run('infer', cls_config, fake, img, '--out', '/proc/x/p.json'), '/proc')
    _one_line_here(capsys, 'infer', cls_config, fake, img, '--show-dir', img, words=('existing file',))
    out = tmp_path / 'p.json'
    out.write_text('{}')
    _one_line_here(capsys, 'infer', cls_config, fake, img, '--out', out, words=('exists', '--force'))


_ORPHAN = '''
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from mmscalenet.tools_common import WorkDirLock
WorkDirLock(sys.argv[2]).acquire()
child = os.fork()
if child == 0:          # a DataLoader worker: outlives its killed parent for a while
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_a_killed_runs_orphaned_workers_do_not_hold_the_lock(tmp_path):
    from mmscalenet.tools_common import WorkDirLock
    proc = subprocess.run([sys.executable, '-c', _ORPHAN, ROOT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr
    child = int(proc.stdout.split()[0])
    try:
        os.kill(child, 0)                                          # the orphan is still alive ...
        lock = WorkDirLock(str(tmp_path))
        lock.acquire(log=lambda line: None)                        # ... and the lock is free at once
        lock.release()
    finally:
        os.kill(child, 9)
