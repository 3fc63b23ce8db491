"""Bad input everywhere: each mistake gets an error naming the file or key, a non-zero exit, no partial output."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

CONFIG = f'{ROOT}/tests/configs/rel_tiny_cls.py'


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'mmscalenet_tool_{name}', f'{ROOT}/tools/{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, f'{ROOT}/tools')
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(f'{ROOT}/tools')
    return module


train_main = _tool('train').main
eval_main = _tool('test').main


def _run(tool, *args, **env):
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))   # ROOT first, the caller's kept
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS='1', **env)
    return subprocess.run([sys.executable, f'{ROOT}/tools/{tool}.py', *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One short real training run (1 epoch) whose checkpoint the tests below evaluate and export."""
    work = tmp_path_factory.mktemp('trained')
    proc = _run('train', CONFIG, '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=1')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / 'epoch_1.pth'


# ---- config path and keys ---------------------------------------------------------------------------------------
def test_missing_config_exits_non_zero_without_output(tmp_path):
    proc = _run('train', tmp_path / 'nope.py', '--work-dir', tmp_path / 'w')
    assert proc.returncode == 1
    assert proc.stderr.strip() == f'error: config file not found: {tmp_path / "nope.py"}'
    assert not (tmp_path / 'w').exists()


def test_help_of_each_tool():
    for tool in ('train', 'test'):
        proc = _run(tool, '--help')
        assert proc.returncode == 0 and '--cfg-options' in proc.stdout and '--work-dir' in proc.stdout


def test_config_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / 'bad.py'
    bad.write_text('model = dict(\n  type="X",\n  depth=,\n)\n')
    assert train_main([str(bad), '--work-dir', str(tmp_path / 'w')]) == 1
    err = capsys.readouterr().err
    assert 'bad.py' in err and 'line 3' in err and not (tmp_path / 'w').exists()
    wrong_ext = tmp_path / 'cfg.txt'
    wrong_ext.write_text('x = 1')
    assert train_main([str(wrong_ext)]) == 1 and 'not a config file' in capsys.readouterr().err


def test_wrong_key_or_value_in_config_names_it_and_cleans_up(tmp_path, capsys):
    """Mistakes found while building the model (a typo in the file, a bad --cfg-options value)."""
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = [{CONFIG!r}]\nmodel = dict(backbone=dict(dept=8))\n")
    work = tmp_path / 'w'
    proc = _run('train', cfg, '--work-dir', work)
    assert proc.returncode == 1
    assert proc.stderr.startswith('error:') and "unexpected keyword argument 'dept'" in proc.stderr
    assert not work.exists()         # the work dir this run created is gone again
    work.mkdir()
    (work / 'keep.txt').write_text('mine')
    capsys.readouterr()     # the second mistake in this process (the first ran the real one)
    assert train_main([CONFIG, '--work-dir', str(work), '--cfg-options', 'model.backbone.mapping=foo']) == 1
    assert "unknown mapping 'foo'" in capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == ['keep.txt']   # an existing work dir: only our leftovers go


@pytest.mark.parametrize('option, expected', [
    ('model.backbone.dept=8', "'model.backbone.dept' is unknown.*Did you mean 'depth'"),
    ('train_cfg.max_epoch=2', "'train_cfg.max_epoch' is unknown.*Did you mean 'max_epochs'"),
    ('optimizer.lr=0.1', "'optimizer.lr' is unknown: <top level>"),
    ('param_scheduler.5.end=3', 'has only 2 entries'),
    ('model.backbone.depth.x=1', 'is a int, not a dict'),
])
def test_unknown_cfg_options_key_refused(tmp_path, capsys, option, expected):
    assert train_main([CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options', option]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: --cfg-options key') and __import__('re').search(expected, err), err
    assert not (tmp_path / 'w').exists()


def test_new_but_valid_cfg_options_keys_accepted():
    from mmengine.config import Config

    from mmscalenet.tools_common import ToolError, check_cfg_options
    cfg = Config.fromfile(CONFIG)
    check_cfg_options(cfg, {'model.backbone.use_rel_pos': False,                 # a ScaleNetViT argument
                            'optim_wrapper.clip_grad.max_norm': 1.0,              # OptimWrapper argument
                            'train_cfg.val_begin': 2,                             # EpochBasedTrainLoop argument
                            'default_hooks.checkpoint.max_keep_ckpts': 2,         # CheckpointHook argument
                            'train_dataloader.persistent_workers': False,         # torch DataLoader argument
                            'param_scheduler.0.end': 5, 'load_from': 'a.pth',
                            'compile': True, 'model_wrapper_cfg.find_unused_parameters': True})  # Runner reads them
    with pytest.raises(ToolError, match="'test_cfg.bogus' is unknown.*TestLoop accepts"):
        check_cfg_options(cfg, {'test_cfg.bogus': 1})
    with pytest.raises(ToolError, match="'train_dataloader.bogus' is unknown"):
        check_cfg_options(cfg, {'train_dataloader.bogus': 1})
    with pytest.raises(ToolError, match='model.backbone.init_cfg is None'):   # mmengine cannot merge into None
        check_cfg_options(cfg, {'model.backbone.init_cfg.checkpoint': 'x.pth'})


def test_malformed_cfg_options(capsys):
    with pytest.raises(SystemExit) as info:             # malformed item: argparse usage error, status 2
        train_main([CONFIG, '--cfg-options', 'model.backbone.depth'])
    assert info.value.code == 2 and 'KEY=VALUE' in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:             # mmengine's parser would recurse forever on this
        train_main([CONFIG, '--cfg-options', 'optim_wrapper.optimizer=dict(type="SGD",lr=0.1)'])
    assert info.value.code == 2 and 'a.b.c=1' in capsys.readouterr().err
    assert train_main([CONFIG, '--cfg-options', 'optim_wrapper.optimizer=SGD']) == 1   # a dict replaced by a str
    assert 'set its keys one by one (optim_wrapper.optimizer.KEY=VALUE)' in capsys.readouterr().err


def test_missing_resume_and_load_from_files(tmp_path, capsys):
    assert train_main([CONFIG, '--work-dir', str(tmp_path / 'w'), '--resume', str(tmp_path / 'gone.pth')]) == 1
    assert 'gone.pth' in capsys.readouterr().err
    assert train_main([CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                       f'load_from={tmp_path / "gone2.pth"}']) == 1
    assert 'gone2.pth' in capsys.readouterr().err and not (tmp_path / 'w').exists()


def test_missing_or_corrupt_data_file(tmp_path, capsys):
    work = tmp_path / 'w'
    proc = _run('train', CONFIG, '--work-dir', work, '--cfg-options',
                f'train_dataloader.dataset.ann_file={tmp_path / "gone.txt"}')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f'error: annotation file not found: {tmp_path / "gone.txt"}'
    assert not work.exists()
    (tmp_path / 'bad.txt').write_text('1\n2\n\x00garbage\n')
    capsys.readouterr()     # the second one in this process (the first ran the real one)
    assert train_main([CONFIG, '--work-dir', str(work), '--cfg-options',
                       f'train_dataloader.dataset.ann_file={tmp_path / "bad.txt"}']) == 1
    assert 'bad.txt, line 3' in capsys.readouterr().err.strip().splitlines()[-1]
    assert not work.exists()


# ---- NaN loss ------------------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_iteration_and_no_checkpoint(tmp_path):
    proc = _run('train', CONFIG, '--work-dir', tmp_path, '--cfg-options', 'train_cfg.max_epochs=1',
                REL_LOSS_SCALE='nan')
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: non-finite loss at training iteration 1 (epoch 1, batch 1)'), last
    assert 'loss=nan' in last
    assert list(tmp_path.iterdir()) == []          # nothing trained: no checkpoint, no leftovers


# ---- tools/test.py ---------------------------------------------------------------------------------------------------
def test_test_tool_evaluates_a_trained_checkpoint(tmp_path, trained):
    proc = _run('test', CONFIG, trained, '--work-dir', tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'rel/accuracy'" in proc.stdout


def test_test_tool_refuses_bad_checkpoints(tmp_path, capsys, trained):
    assert eval_main([CONFIG, str(tmp_path / 'missing.pth'), '--work-dir', str(tmp_path / 'w')]) == 1
    assert 'checkpoint file not found' in capsys.readouterr().err and not (tmp_path / 'w').exists()
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert eval_main([CONFIG, str(tmp_path / 'empty.pth')]) == 1
    assert 'is empty' in capsys.readouterr().err
    # a checkpoint of another model: strict load fails instead of evaluating random weights
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.pos_embed': torch.zeros(1, 17, 32)}}, other)
    assert eval_main([CONFIG, str(other), '--work-dir', str(tmp_path / 'w2')]) == 1
    err = capsys.readouterr().err
    assert 'does not match the model' in err and 'other.pth' in err and not (tmp_path / 'w2').exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("payload ran")',))


def test_test_tool_refuses_pickled_payload(tmp_path, trained):
    from mmscalenet.checkpoint import safe_load
    ckpt = safe_load(str(trained))
    marker = tmp_path / 'marker'
    ckpt['meta']['evil'] = _Payload(str(marker))
    torch.save(ckpt, tmp_path / 'evil.pth')
    proc = _run('test', CONFIG, tmp_path / 'evil.pth', '--work-dir', tmp_path / 'w')
    assert proc.returncode == 1
    assert 'refused to load' in proc.stderr and 'evil.pth' in proc.stderr
    assert not marker.exists()


# ---- training checkpoints carry the ScaleNet metadata ----------------------------------------------------------------
def test_training_checkpoint_exports_and_reloads(tmp_path, trained):
    from mmscalenet.checkpoint import load_scalenet
    export = _tool('export').main
    assert export([str(trained), str(tmp_path / 'x.pth')]) == 2                # ParallelAdapter: not mergeable
    assert export([str(trained), str(tmp_path / 'shared.pth'), '--format', 'scalenet']) == 0
    model, head = load_scalenet(str(tmp_path / 'shared.pth'))
    from mmscalenet.checkpoint import safe_load
    state = safe_load(str(trained))['state_dict']
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[f'backbone.{k}']), k
    assert torch.equal(head['weight'], state['head.weight'])
    deeper, _ = load_scalenet(str(trained), depth=6)                          # continue at another depth
    assert deeper.plan.depth == 6 and torch.equal(deeper.blocks[1].attn.qkv.weight,
                                                  state['backbone.blocks.1.attn.qkv.weight'])


# ---- issue 24, item 5: the remaining tool messages ------------------------------------------------------------------
COCO_CONFIG = f'{ROOT}/configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'
DIGITS_CLS = f'{ROOT}/configs/demo/digits_cls_scalenet.py'


def test_amp_without_a_gpu_is_one_line_or_falls_back(tmp_path, capsys):
    """--amp on a CPU-only machine: one line, no work dir; a config's own AmpOptimWrapper: fp32, with a warning."""
    from mmengine.config import Config

    from mmscalenet.run_checks import amp_device_available, fit_amp_to_device
    if amp_device_available():
        pytest.skip('a GPU is here: AMP is available')
    assert train_main([COCO_CONFIG, '--amp', '--work-dir', str(tmp_path / 'w')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --amp needs a CUDA') and not (tmp_path / 'w').exists()
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(type='SGD'))))
    fit_amp_to_device(cfg, 'c.py')
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=dict(type='SGD'))
    assert 'warning: c.py: optim_wrapper.type=AmpOptimWrapper needs a GPU' in capsys.readouterr().err


@pytest.fixture(scope='module')
def digits_classifier(tmp_path_factory):
    """A ScaleNetClassifier of the digits config built with adapter bottleneck 4 (not the config's 8), saved as a
    run checkpoint, and a digit-sized image."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from PIL import Image

    import mmscalenet  # noqa: F401
    from mmdet.registry import MODELS
    tmp = tmp_path_factory.mktemp('digits_classifier')
    cfg = Config.fromfile(DIGITS_CLS)
    init_default_scope('mmdet')
    backbone = dict(cfg.model.backbone, adapter=dict(cfg.model.backbone.adapter, bottleneck=4))
    model = MODELS.build(dict(cfg.model, init_cfg=None, backbone=backbone))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, tmp / 'bottleneck4.pth')
    Image.new('RGB', (32, 32), (200, 10, 10)).save(tmp / 'digit.png')
    return tmp


def test_classification_infer_takes_cfg_options_and_a_mismatch_is_one_line(digits_classifier, capsys):
    infer = _tool('infer').main
    ckpt, img = str(digits_classifier / 'bottleneck4.pth'), str(digits_classifier / 'digit.png')
    assert infer([DIGITS_CLS, ckpt, img, '--topk', '2']) == 1            # the config's bottleneck 8: does not fit
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'error: {ckpt} does not fit the model of {DIGITS_CLS}'), err
    assert 'size mismatch' in err[0] and '(and ' in err[0] and '--cfg-options' in err[0]
    assert infer([DIGITS_CLS, ckpt, img, '--topk', '2', '--cfg-options', 'model.backbone.adapter.bottleneck=4']) == 0
    assert f'{img}: ' in capsys.readouterr().out


def test_detection_infer_takes_a_folder_with_out_dir(tmp_path, capsys):
    """Checked before any model is built (the checkpoint is not even read): a folder needs --out-dir, existing
    outputs need --force, an empty folder is named."""
    from PIL import Image
    infer = _tool('infer').main
    det = f'{ROOT}/configs/demo/digits_det_scalenet.py'
    fake = tmp_path / 'ckpt.pth'
    fake.write_bytes(b'not read')
    (tmp_path / 'imgs').mkdir()
    assert infer([det, str(fake), str(tmp_path / 'imgs'), '--out-dir', str(tmp_path / 'o')]) == 1
    assert 'no image file' in capsys.readouterr().err
    for name in ('a.png', 'b.jpg'):
        Image.new('RGB', (8, 8)).save(tmp_path / 'imgs' / name)
    assert infer([det, str(fake), str(tmp_path / 'imgs'), '--out', str(tmp_path / 'x.png')]) == 1
    assert 'is a folder: give --out-dir DIR' in capsys.readouterr().err
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / 'b.jpg').write_bytes(b'mine')
    assert infer([det, str(fake), str(tmp_path / 'imgs'), '--out-dir', str(tmp_path / 'o')]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f'error: --out-dir: {tmp_path / "o" / "b.jpg"} exists; pass --force to overwrite it', err
    assert (tmp_path / 'o' / 'b.jpg').read_bytes() == b'mine'
    # a detector's checkpoint (random weights) on the folder: one drawn image per input, under its own name
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile(det)
    model = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, init_cfg=None)))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, fake)
    assert infer([det, str(fake), str(tmp_path / 'imgs'), '--out-dir', str(tmp_path / 'o'), '--force',
                  '--score-thr', '0']) == 0
    out = capsys.readouterr().out
    assert f'{tmp_path / "imgs" / "a.png"}: ' in out and f'saved {tmp_path / "o" / "b.jpg"}' in out
    assert Image.open(tmp_path / 'o' / 'a.png').size == (8, 8)
