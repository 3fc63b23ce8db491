"""Output files of export.py, expand.py and extract_backbone.py (issue 25, item 7), as test.py / infer.py treat
theirs: never an input (``export X X``), never through a symbolic link, an existing file only with --force; each
refusal one line, before any work, nothing changed. And the work-dir lock for runs that other programs start."""
import os

import pytest
import torch

from conftest import TINY_ARCH, tool_main




def _refused(tool, argv, capsys):
    """(status, the one stderr line) of an in-process tool run that refuses: export returns, the others exit."""
    try:
        code = tool_main(tool)(argv)
        text = capsys.readouterr().err.strip()
    except SystemExit as err:
        code, text = 1, str(err.code).strip()
    assert code == 1 and '\n' not in text and text.startswith('error: '), text
    return text


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A grown tiny ViT in the ScaleNet format, and a run checkpoint of a classifier with its metadata."""
    from mmscalenet.checkpoint import save_scalenet, scalenet_meta
    from mmscalenet.models import ScaleNetViT
    tmp = tmp_path_factory.mktemp('outputs')
    torch.manual_seed(0)
    model = ScaleNetViT(TINY_ARCH, depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4), img_size=32,
                        patch_size=8)
    save_scalenet(model, str(tmp / 'grown.pth'))
    run = tmp / 'run'
    run.mkdir()
    state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    state.update({'head.weight': torch.randn(10, 64), 'head.bias': torch.zeros(10)})
    torch.save(dict(state_dict=state, meta=dict(epoch=1, scalenet=scalenet_meta(model),
                                                scalenet_prefix='backbone.')), str(run / 'epoch_1.pth'))
    (run / 'last_checkpoint').write_text(str(run / 'epoch_1.pth'))
    return tmp


def test_export_to_its_own_input_is_refused_even_with_force(files, capsys):
    src = files / 'grown.pth'
    before = src.read_bytes()
    for extra in ([], ['--force']):
        line = _refused('export', [str(src), str(src), '--format', 'scalenet', *extra], capsys)
        assert f'output {src} is the input {src}' in line
    assert src.read_bytes() == before


def test_symbolic_link_destinations_are_refused_and_left_alone(files, tmp_path, capsys):
    src = files / 'grown.pth'
    elsewhere = tmp_path / 'precious.txt'
    elsewhere.write_text('keep me')
    for target in (src, elsewhere, tmp_path / 'missing'):
        link = tmp_path / f'link_to_{target.name}'
        link.symlink_to(target)
        for tool, extra in (('export', ['--format', 'scalenet', '--force']),
                            ('expand', ['--arch', '{"embed_dims": 64, "num_layers": 4, "num_heads": 4, '
                                        '"mlp_ratio": 2.0}', '--depth', '8', '--force'])):
            line = _refused(tool, [str(src), str(link), *extra], capsys)
            assert 'is a symbolic link' in line or 'is the input' in line, line
        assert link.is_symlink() and os.readlink(link) == str(target)
    assert elsewhere.read_text() == 'keep me'


def test_existing_outputs_need_force(files, tmp_path, capsys):
    src, dst = files / 'grown.pth', tmp_path / 'out.pth'
    dst.write_bytes(b'mine')
    line = _refused('export', [str(src), str(dst), '--format', 'scalenet'], capsys)
    assert line == f'error: output {dst} exists; pass --force to overwrite it'
    arch = '{"embed_dims": 64, "num_layers": 4, "num_heads": 4, "mlp_ratio": 2.0}'
    assert f'output {dst} exists' in _refused('expand', [str(src), str(dst), '--arch', arch, '--depth', '8'], capsys)
    assert dst.read_bytes() == b'mine'
    assert tool_main('export')([str(src), str(dst), '--format', 'scalenet', '--force']) == 0
    from mmscalenet.checkpoint import load_scalenet
    assert load_scalenet(str(dst))[0].plan.depth == 6


def test_extract_backbone_keeps_an_earlier_extraction_unless_forced(files, capsys):
    run = files / 'run'
    tool_main('extract_backbone')([str(run)])
    out = run / 'backbone.pth'
    first = out.read_bytes()
    line = _refused('extract_backbone', [str(run)], capsys)
    assert line == f'error: output {out} exists; pass --force to overwrite it'
    assert 'is the input' in _refused('extract_backbone', [str(run / 'epoch_1.pth'), str(run / 'epoch_1.pth')],
                                      capsys)
    tool_main('extract_backbone')([str(run), '--force'])
    assert out.is_file() and len(out.read_bytes()) == len(first)


def test_work_dir_lock_hook_for_runs_other_programs_start(tmp_path):
    """mmdet's train.py with a shipped config: the lock tools/train.py takes, held from before_run to after_run;
    another holder stops the run with the line naming it; a process holding it already (tools/train.py) passes."""
    import fcntl
    import json
    from types import SimpleNamespace

    from mmengine.runner import BaseLoop

    from mmscalenet.engine.lock_hook import WorkDirLockHook
    from mmscalenet.tools_common import LOCK_NAME, ToolError, WorkDirLock

    class Loop(BaseLoop):
        def run(self):
            pass

    runner = SimpleNamespace(work_dir=str(tmp_path), logger=SimpleNamespace(warning=print))
    runner._train_loop = Loop(runner, [])
    hook = WorkDirLockHook()
    hook.before_run(runner)
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    hook.after_run(runner)
    assert not (tmp_path / LOCK_NAME).exists()
    # another process's lock (an open file description of its own): refused, naming the holder
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    os.write(fd, json.dumps(dict(pid=4242, host='elsewhere', start='then')).encode())
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(ToolError, match='in use by another run .pid 4242 on host elsewhere'):
            WorkDirLockHook().before_run(runner)
    finally:
        os.close(fd)
    # this process holds it (tools/train.py): the hook passes; testing (no train loop) never locks
    own = WorkDirLock(str(tmp_path))
    own.acquire(log=lambda line: None)
    try:
        WorkDirLockHook().before_run(runner)
        WorkDirLockHook().before_run(SimpleNamespace(work_dir=str(tmp_path / 'other'), _train_loop=dict()))
        assert not (tmp_path / 'other').exists()
    finally:
        own.release()


def test_extract_backbone_checks_the_sizes_its_metadata_asks_for_before_allocating(files, tmp_path, capsys):
    """A run checkpoint whose metadata asks for embed_dims=8192 (GBs for this arch) is refused in one line naming the
    tensors that do not fit, before the backbone is built; nothing is written."""
    import resource
    obj = torch.load(str(files / 'run' / 'epoch_1.pth'), weights_only=False)
    obj['meta']['scalenet']['arch']['embed_dims'] = 8192
    run = tmp_path / 'run'
    run.mkdir()
    torch.save(obj, str(run / 'epoch_1.pth'))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = _refused('extract_backbone', [str(run / 'epoch_1.pth')], capsys)
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert 'refused before allocating' in line and 'ScaleNetViT, depth 6' in line and '--config' in line, line
    assert grew_mib < 256, grew_mib                 # the 8192-wide model would take gigabytes
    assert not (run / 'backbone.pth').exists()
