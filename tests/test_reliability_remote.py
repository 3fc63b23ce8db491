"""Remote checkpoints never unpickle code: a pickle payload served over HTTP on 127.0.0.1 (a thread of this test)
is refused through every path that fetches a URL (the tools' ``init_cfg``, mmscalenet's ``resolve_checkpoint``,
mmengine's ``load_from`` / ``CheckpointLoader`` inside ``safe_mmengine_io``, timm's hub loader behind ``timm:``),
and config text stored in a checkpoint is never executed (``Runner.resume``'s ``meta.config``, mmdet's
``DetInferencer(model=None)``). Each test checks that the payload's marker file was never written."""
import functools
import http.server
import os
import subprocess
import sys
import threading

import pytest
import torch

from conftest import ROOT

CONFIG = f'{ROOT}/tests/configs/rel_tiny_cls.py'


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("payload ran")',))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(base URL, marker path): ``evil.pth`` (a pickle payload) served from 127.0.0.1; torch's hub cache in
    ``tmp_path`` so nothing outside the test is written or reused."""
    root = tmp_path / 'www'
    root.mkdir()
    marker = tmp_path / 'marker'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {'x': _Payload(str(marker))}}, root / 'evil.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', marker
    finally:
        server.shutdown()
        server.server_close()


def test_resolve_checkpoint_refuses_a_payload_url(served):
    from mmscalenet.checkpoint import CheckpointError, resolve_checkpoint
    url, marker = served
    with pytest.raises(CheckpointError, match=r'refused to load http://127\.0\.0\.1.*\(blocked global (builtins\.)?exec\)'):
        resolve_checkpoint(f'{url}/evil.pth')
    assert not marker.exists()


@pytest.mark.parametrize('scheme', ['http', 'torchvision'])
def test_mmengine_url_loaders_refuse_inside_the_context(served, monkeypatch, scheme):
    """mmengine's http loader (``load_url``, weights_only=False) and a scheme that resolves to a URL."""
    from mmengine.runner import checkpoint as mm_checkpoint
    from mmscalenet.checkpoint import CheckpointError, safe_mmengine_io
    url, marker = served
    name = f'{url}/evil.pth'
    if scheme == 'torchvision':
        monkeypatch.setattr(mm_checkpoint, 'get_torchvision_models', lambda target=name: {'evil': target})
        name = 'torchvision://evil'
    with safe_mmengine_io():
        with pytest.raises(CheckpointError, match='refused to load'):
            mm_checkpoint.CheckpointLoader.load_checkpoint(name, map_location='cpu')
    assert not marker.exists()
    assert torch.load is torch.serialization.load   # restored


def test_runner_load_from_url_with_the_hook_is_refused(served, tmp_path, mmdet_scope):
    """mmdet's own tools/train.py path: a Runner whose config lists SafeCheckpointIOHook, ``load_from=http://``."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmscalenet.checkpoint import CheckpointError
    url, marker = served
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({'work_dir': str(tmp_path / 'w'), 'load_from': f'{url}/evil.pth',
                         'default_hooks.safe_io': dict(type='SafeCheckpointIOHook'), 'custom_hooks': []})
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'SafeCheckpointIOHook')
    try:
        with pytest.raises(CheckpointError, match='refused to load'):
            runner.test()
    finally:
        hook.close()
    assert not marker.exists()


@pytest.mark.parametrize('where', ['backbone', 'model'])
def test_train_tool_refuses_an_init_cfg_url_payload(served, tmp_path, where):
    """``init_cfg`` of the ScaleNet backbone (mmscalenet's loader) and of the whole model (mmengine's
    ``PretrainedInit`` -> ``CheckpointLoader``'s http loader, as in the Swin baseline configs)."""
    url, marker = served
    config = tmp_path / 'url_init.py'
    init = f"type='Pretrained', checkpoint='{url}/evil.pth'"
    model = (f"dict(backbone=dict(init_cfg=dict(_delete_=True, {init})))" if where == 'backbone'
             else f"dict(init_cfg=dict({init}))")   # the base config's backbone init_cfg is None, the model has none
    config.write_text(f"_base_ = [{CONFIG!r}]\nmodel = {model}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])),
               OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, f'{ROOT}/tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', 'train_cfg.max_epochs=1'], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'refused to load' in proc.stderr.strip().splitlines()[-1]
    assert not marker.exists()


def test_timm_hub_loader_is_forced_to_weights_only(served, monkeypatch):
    """``timm:NAME``: even a timm whose URL loader passes ``weights_only=False`` (simulated here) unpickles no code."""
    import dataclasses
    import timm.models._builder as builder
    from timm.models import _registry
    from mmscalenet.checkpoint import CheckpointError, resolve_checkpoint
    url, marker = served
    name = 'deit_tiny_patch16_224.fb_in1k'
    cfg = _registry.get_pretrained_cfg(name)
    monkeypatch.setitem(_registry._model_pretrained_cfgs, name,
                        dataclasses.replace(cfg, url=f'{url}/evil.pth', hf_hub_id=None, file=None, source=None,
                                            custom_load=False))
    unsafe = torch.hub.load_state_dict_from_url
    monkeypatch.setattr(builder, 'load_state_dict_from_url',
                        lambda *a, **k: unsafe(*a, **dict(k, weights_only=False)))
    with pytest.raises(CheckpointError, match='refused to load'):
        resolve_checkpoint(f'timm:{name}')
    assert not marker.exists()


def _run_checkpoint(path, meta):
    torch.save({'state_dict': {}, 'meta': meta, 'message_hub': {}}, path)


def test_config_text_in_a_checkpoint_is_never_executed(tmp_path):
    """``Config.fromstring`` on Python text (mmengine's only callers read it from a checkpoint) is refused inside
    the context; JSON text still parses; outside the context mmengine's function is back."""
    from mmengine.config import Config
    from mmscalenet.checkpoint import CheckpointError, safe_mmengine_io
    marker = tmp_path / 'marker'
    text = f'open({str(marker)!r}, "w").write("ran")\nx = 1\n'
    original = Config.__dict__['fromstring']
    with safe_mmengine_io():
        with pytest.raises(CheckpointError, match='refused to execute the config text'):
            Config.fromstring(text, file_format='.py')
        assert Config.fromstring('{"a": 1}', file_format='.json').a == 1
    assert not marker.exists()
    assert Config.__dict__['fromstring'] is original


def test_det_inferencer_without_a_config_refuses_the_checkpoint_config(tmp_path):
    pytest.importorskip('mmdet')
    from mmdet.apis import DetInferencer
    from mmscalenet.checkpoint import CheckpointError, safe_mmengine_io
    marker = tmp_path / 'marker'
    ckpt = tmp_path / 'run.pth'
    _run_checkpoint(ckpt, {'cfg': f'open({str(marker)!r}, "w").write("ran")\nmodel = dict(type="X")\n'})
    with safe_mmengine_io():
        with pytest.raises(CheckpointError, match='refused to execute the config text'):
            DetInferencer(model=None, weights=str(ckpt), device='cpu')
    assert not marker.exists()


def test_resume_never_executes_meta_config(tmp_path, mmdet_scope):
    """mmengine's ``Runner.resume`` parses ``meta.config`` (mmcv-era key) with ``Config.fromstring``: before this
    change ``tools/train.py --resume`` ran the Python in it. Inside the context it is refused."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmscalenet.checkpoint import CheckpointError, safe_mmengine_io
    marker = tmp_path / 'marker'
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {}, 'meta': {'epoch': 1, 'iter': 2,
                                           'config': f'open({str(marker)!r}, "w").write("ran")\ngpu_ids = [0]\n'}},
               ckpt)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({'work_dir': str(tmp_path / 'w'), 'load_from': str(ckpt), 'resume': True,
                         'custom_hooks': []})
    with safe_mmengine_io():
        runner = Runner.from_cfg(cfg)
        with pytest.raises(CheckpointError, match='refused to execute the config text'):
            runner.train()
    assert not marker.exists()
