"""Safe mmengine IO is opt-in: ``import mmscalenet`` leaves mmengine as it is; ``safe_mmengine_io()`` and
``SafeCheckpointIOHook`` install weights_only loading and atomic writes for a block / a run and restore them."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from mmscalenet.checkpoint import CheckpointError, safe_io_active, safe_mmengine_io
from mmscalenet.checkpoint import mmengine_io

_SNAPSHOT = '''
import json, torch
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.runner.checkpoint import CheckpointLoader
import mmengine.hooks.checkpoint_hook as checkpoint_hook

def snapshot():
    """ids (and names) of what safe_mmengine_io() replaces: equal ids mean the very same objects."""
    return dict(put=[id(LocalBackend.__dict__['put']), LocalBackend.__dict__['put'].__qualname__],
                put_text=[id(LocalBackend.__dict__['put_text']), LocalBackend.__dict__['put_text'].__qualname__],
                loaders={p: [id(f), getattr(f, '__qualname__', '')] for p, f in CheckpointLoader._schemes.items()},
                hook_open='open' in vars(checkpoint_hook), torch_load=id(torch.load),
                # torch's own modules add theirs when imported (torch._dynamo by timm): not counted
                safe_globals=sorted(s for s in map(str, torch.serialization.get_safe_globals())
                                    if not s.startswith("<class 'torch.")))

before = snapshot()
import mmscalenet, mmscalenet.checkpoint, mmscalenet.engine.hooks
from mmdet.registry import HOOKS, MODELS
assert MODELS.get('ScaleNetViT') is not None and HOOKS.get('SafeCheckpointIOHook') is not None
print('SNAPSHOTS', json.dumps([before, snapshot()]))
'''


def _mmengine_state():
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    from mmengine.config import Config
    return dict(put=LocalBackend.__dict__['put'], put_text=LocalBackend.__dict__['put_text'],
                loaders=dict(CheckpointLoader._schemes), hook_open=vars(checkpoint_hook).get('open'),
                safe_globals=set(torch.serialization.get_safe_globals()), torch_load=torch.load,
                serialization_load=torch.serialization.load, fromstring=Config.__dict__['fromstring'].__func__,
                hook_save=[checkpoint_hook.CheckpointHook.__dict__[n] for n in
                           ('_save_checkpoint_with_step', '_save_best_checkpoint')])


def _assert_same(a, b):
    assert a['put'] is b['put'] and a['put_text'] is b['put_text'] and a['hook_open'] is b['hook_open']
    assert a['torch_load'] is b['torch_load'] and a['serialization_load'] is b['serialization_load']
    assert a['fromstring'] is b['fromstring'] and a['hook_save'] == b['hook_save']
    assert a['loaders'].keys() == b['loaders'].keys()
    assert all(a['loaders'][k] is b['loaders'][k] for k in a['loaders'])
    assert a['safe_globals'] == b['safe_globals']


def _assert_safe():
    from mmengine.logging import HistoryBuffer
    state = _mmengine_state()
    assert state['put'] is mmengine_io._atomic_local_put and state['put_text'] is mmengine_io._atomic_local_put_text
    assert state['loaders'][''] is mmengine_io._mmengine_load_from_local
    assert state['hook_open'] is mmengine_io._checkpoint_hook_open
    from mmscalenet.checkpoint import io
    assert state['torch_load'] is io._forced_load and state['serialization_load'] is io._forced_load
    assert state['fromstring'] is mmengine_io._refuse_config_text
    assert [m.__name__ for m in state['hook_save']] == ['_save_checkpoint_with_step', '_save_best_checkpoint']
    assert all(m.__module__ == mmengine_io.__name__ for m in state['hook_save'])
    assert HistoryBuffer in state['safe_globals'] and safe_io_active()


def test_import_leaves_mmengine_untouched():
    """A fresh interpreter: mmengine's LocalBackend and checkpoint loaders before and after ``import mmscalenet`` are
    the same objects; torch's allow-list gains mmengine's checkpoint data types and nothing else."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = json.loads(next(line for line in proc.stdout.splitlines()
                                    if line.startswith('SNAPSHOTS')).split(' ', 1)[1])
    assert before['loaders'] and not before['hook_open']
    # the one deliberate change (mmscalenet/mmengine_globals.py): mmengine's checkpoint types join torch's allow-list
    def norm(items):
        return {re.sub(r' at 0x[0-9a-f]+', '', s) for s in items}
    added = norm(after.pop('safe_globals')) - norm(before.pop('safe_globals'))
    assert added and added <= norm(map(str, mmengine_io.mmengine_safe_globals()))
    assert after == before


def test_context_installs_nests_and_restores():
    original = _mmengine_state()
    assert not safe_io_active()
    with safe_mmengine_io():
        _assert_safe()
        with safe_mmengine_io():          # nested (a tool running a runner with the hook): one install
            _assert_safe()
        _assert_safe()                    # the inner block's exit keeps the outer one safe
        from mmengine.runner.checkpoint import CheckpointLoader
        CheckpointLoader.register_scheme('mmscalenet-test://', loader=len)   # someone else's scheme ...
    try:
        after = _mmengine_state()
        assert after['loaders'].pop('mmscalenet-test://') is len          # ... survives the restore
        _assert_same(after, original)
    finally:
        CheckpointLoader._schemes.pop('mmscalenet-test://', None)
    assert not safe_io_active()


def test_context_restores_on_an_exception():
    original = _mmengine_state()
    with pytest.raises(KeyError):
        with safe_mmengine_io():
            _assert_safe()
            raise KeyError('boom')
    _assert_same(_mmengine_state(), original)


def test_hook_opens_for_the_run_and_restores():
    from mmscalenet.engine.hooks import SafeCheckpointIOHook
    original = _mmengine_state()
    hook = SafeCheckpointIOHook()
    hook.before_run(None)
    _assert_safe()
    hook.after_run(None)
    _assert_same(_mmengine_state(), original)
    hook.before_run(None)                 # a run that raised (no after_run), then a new run: no leaked level
    hook.before_run(None)
    hook.after_run(None)
    _assert_same(_mmengine_state(), original)
    assert not safe_io_active()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("payload ran")',))


def test_runner_with_the_hook_refuses_a_payload(tmp_path, mmdet_scope):
    """``load_from`` a pickle payload: a Runner whose config has the hook refuses it with mmscalenet's message."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    marker = tmp_path / 'marker'
    torch.save({'state_dict': {}, 'meta': {'evil': _Payload(str(marker))}}, tmp_path / 'evil.pth')
    cfg = Config.fromfile(os.path.join(ROOT, 'tests', 'configs', 'rel_tiny_cls.py'))
    cfg.merge_from_dict({'work_dir': str(tmp_path / 'w'), 'load_from': str(tmp_path / 'evil.pth'),
                         'default_hooks.safe_io': dict(type='SafeCheckpointIOHook'), 'custom_hooks': []})
    original = _mmengine_state()
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'SafeCheckpointIOHook')
    try:
        with pytest.raises(CheckpointError, match='refused to load .*evil.pth'):
            runner.test()
    finally:
        hook.close()                      # mmengine calls no hook after an exception
    assert not marker.exists()
    _assert_same(_mmengine_state(), original)
