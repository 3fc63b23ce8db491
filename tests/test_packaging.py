"""OpenMMLab packaging: the wheel carries configs, tools and the model index under mmscalenet/.mim, mmengine resolves
``mmscalenet::`` bases from the installed package (mmdet's own tools too, through the install's .pth), and the
metafiles list every shipped config."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from conftest import ROOT

COCO_CFG = 'coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The project built into a wheel (from a copy of the checkout, which stays untouched) and unpacked."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    for item in ('mmscalenet', 'configs', 'tools'):
        shutil.copytree(osp.join(ROOT, item), src / item, symlinks=False,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.mim'))
    for item in ('setup.py', 'model-index.yml', 'README.md', 'requirements.txt', '_mmscalenet_config_scheme.py'):
        shutil.copy2(osp.join(ROOT, item), src / item)
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
                           '-q', '-w', str(tmp / 'dist'), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel, = glob.glob(str(tmp / 'dist' / 'mmscalenet-*.whl'))
    site = tmp / 'site'
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    return site, names


def test_wheel_ships_configs_tools_and_index(installed):
    _, names = installed
    for path in (COCO_CFG, 'coco/_base_/vitdet_mask-rcnn_lsj-100e_coco.py', 'imagenet/metafile.yml',
                 'coco/metafile.yml', 'demo/digits_cls_scalenet.py', '_base_/models/scalenet_deit_cls.py'):
        assert f'mmscalenet/.mim/configs/{path}' in names, path
    for path in ('model-index.yml', 'tools/train.py', 'tools/test.py', 'tools/dist_train.sh', 'tools/dist_test.sh',
                 'tools/torchrun_launch.sh', 'tools/analysis/get_flops.py'):
        assert f'mmscalenet/.mim/{path}' in names, path
    meta = next(n for n in names if n.endswith('.dist-info/METADATA'))
    with zipfile.ZipFile(glob.glob(str(installed[0].parent / 'dist' / '*.whl'))[0]) as z:
        requires = [line for line in z.read(meta).decode().splitlines() if line.startswith('Requires-Dist')]
    assert any('mmcv' in r and '<2.2.0' in r and '>=2.0.0' in r for r in requires), requires
    assert any(r.split()[1].startswith('torch') and '>=' in r for r in requires), requires


@pytest.mark.parametrize('editable', [False, True])
def test_mmscalenet_scheme_from_the_installed_package(installed, tmp_path, editable):
    """From a wheel's files; ``editable``: without the wheel's metadata, as a PEP 660 editable install leaves the
    package (site-packages holds only a finder and the metadata of the checkout's install)."""
    site, _ = installed
    if editable:
        site = tmp_path / 'editable'
        shutil.copytree(installed[0] / 'mmscalenet', site / 'mmscalenet')
        shutil.copy2(installed[0] / '_mmscalenet_config_scheme.py', site)
    (tmp_path / 'user.py').write_text(f"_base_ = 'mmscalenet::{COCO_CFG}'\nmodel = dict(backbone=dict(depth=18))\n")
    code = ('import mmscalenet, sys\n'
            f'assert mmscalenet.__file__.startswith({str(site)!r}), mmscalenet.__file__\n'
            'from mmengine.config import Config\n'
            'cfg = Config.fromfile("user.py")\n'
            'print("RESULT", cfg.model.backbone.arch, cfg.model.backbone.depth, cfg.model.backbone.window_size, '
            'cfg.model.neck.backbone_channel)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = next(line for line in proc.stdout.splitlines() if line.startswith('RESULT'))
    assert result.split()[1:] == ['deit-small', '18', '14', '384']


def test_both_installs_carry_the_startup_hook(installed):
    """The regular wheel and the PEP 660 editable wheel (``pip install -e .``) both put the ``.pth`` and its module
    into site-packages; the editable one maps the module to the checkout like the package."""
    _, names = installed
    assert {'mmscalenet-config-scheme.pth', '_mmscalenet_config_scheme.py'} <= names
    src = installed[0].parent / 'src'
    code = 'from setuptools import build_meta; print("WHEEL", build_meta.build_editable("../editable-dist"))'
    proc = subprocess.run([sys.executable, '-c', code], cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = src.parent / 'editable-dist' / proc.stdout.split('WHEEL')[-1].strip()
    with zipfile.ZipFile(wheel) as z:
        pth = z.read('mmscalenet-config-scheme.pth').decode()
        finder = next(z.read(n).decode() for n in z.namelist() if n.endswith('_finder.py'))
        record = next(z.read(n).decode() for n in z.namelist() if n.endswith('RECORD'))
    assert pth == 'import _mmscalenet_config_scheme; _mmscalenet_config_scheme.install()\n'
    assert f"'_mmscalenet_config_scheme': '{src / '_mmscalenet_config_scheme'}'" in finder
    assert 'mmscalenet-config-scheme.pth,sha256=' in record
    assert (src / 'mmscalenet' / '.mim' / 'configs').is_symlink()


# mmdet's own tools (from the installed mmdet's .mim), run as a user runs them on a config in their own folder; the
# wheel's site folder is added with site.addsitedir, which runs its .pth as Python does for site-packages at start-up
_MMDET_TOOLS = """
import os, runpy, site, sys
site.addsitedir(sys.argv[1])
print('STARTUP', 'mmengine' in sys.modules, 'torch' in sys.modules,
      any(getattr(f, '__name__', '') == '_PatchAfterImport' for f in sys.meta_path))
tools, runs = sys.argv[2], sys.argv[3:]
for run in runs:
    sys.argv = [os.path.join(tools, run.split()[0]), *run.split()[1:]]
    runpy.run_path(sys.argv[0], run_name='__main__')
    print('DONE', run.split()[0])
import gc
from mmscalenet.engine.hooks import SafeCheckpointIOHook
class Run:   # a runner that raised: its hooks opened, never closed, in a reference cycle collected at exit
    pass
run = Run()
run.me, run.hook = run, SafeCheckpointIOHook()
run.hook.before_run(None)
del run
gc.disable()
"""


@pytest.fixture(scope='module')
def mmdet_tools_run(installed, tmp_path_factory):
    """mmdet's tools/train.py (one iteration) then tools/test.py --out on ``_base_ = 'mmscalenet::<COCO config>'``,
    shrunk by the options ``python -m mmscalenet.smoke`` prints (mmscalenet/smoke.py), on the pipeline test's tiny
    COCO set, then analysis_tools/browse_dataset.py on a classification config: one process, the three tools."""
    import mmdet
    from mmengine.config import Config
    from test_pipeline import _coco_set

    import mmscalenet  # noqa: F401  (resolves mmscalenet:: in this process)
    from mmscalenet.smoke import format_options, smoke_options
    cwd = tmp_path_factory.mktemp('mmdet_tools')
    _coco_set(str(cwd / 'data' / 'coco'))
    (cwd / 'user.py').write_text(f"_base_ = 'mmscalenet::{COCO_CFG}'\nmodel = dict(backbone=dict(drop_path_rate=0.0))\n")
    small = ' '.join(format_options(smoke_options(Config.fromfile(str(cwd / 'user.py')))))
    train = (f'train.py user.py --work-dir run --cfg-options {small} train_cfg.max_iters=1 '
             'default_hooks.checkpoint.interval=1')
    test = f'test.py user.py run/iter_1.pth --work-dir test --out preds.pkl --cfg-options {small}'
    # mmdet's dataset browser on a classification config (the ImageNet stage's runtime, digits data)
    (cwd / 'user_cls.py').write_text("_base_ = 'mmscalenet::demo/digits_cls_base.py'\n")
    browse = ('analysis_tools/browse_dataset.py user_cls.py --not-show --output-dir browse '
              '--cfg-options train_dataloader.dataset.indices=3')
    tools = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH='')   # nothing of the checkout: the wheel's files only
    proc = subprocess.run([sys.executable, '-c', _MMDET_TOOLS, str(installed[0]), tools, train, test, browse], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    return proc, cwd


def test_mmdet_own_tools_train_and_test_an_mmscalenet_base(mmdet_tools_run):
    proc, cwd = mmdet_tools_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # start-up: the .pth put the hook on sys.meta_path and imported neither mmengine nor torch
    assert 'STARTUP False False True' in proc.stdout
    assert 'DONE train.py' in proc.stdout and 'DONE test.py' in proc.stdout
    assert 'coco/segm_mAP' in proc.stdout + proc.stderr and (cwd / 'preds.pkl').is_file()
    dumped = (cwd / 'run' / 'user.py').read_text()       # mmdet's train.py dumps the resolved config
    assert "type='ScaleNetViT'" in dumped and 'depth=8' in dumped and 'drop_path_rate=0.0' in dumped
    # the shipped configs' default_hooks: the checkpoint of mmdet's train.py carries the ScaleNet metadata
    from mmscalenet.checkpoint import safe_load
    meta = safe_load(str(cwd / 'run' / 'iter_1.pth'))['meta']
    assert len(meta['scalenet']['sources']) == 8 and meta['scalenet_prefix'] == 'backbone.'
    assert not (cwd / 'run' / '.mmscalenet.lock').exists()   # WorkDirLockHook held the work dir, then let it go
    # browse_dataset.py drew each classification sample with its class (ScaleNetClsVisualizer)
    assert 'DONE analysis_tools/browse_dataset.py' in proc.stdout
    drawn = sorted(p.name for p in (cwd / 'browse').iterdir())
    assert drawn == [f'ScaleNetDigits_train_{i:05d}.png' for i in range(3)]
    from PIL import Image
    assert Image.open(cwd / 'browse' / drawn[0]).size == (256, 256)   # 32 px digits enlarged for the text
    # a SafeCheckpointIOHook left open (as by a run that raised) is closed at exit, not during Python's teardown
    assert 'sys.meta_path is None' not in proc.stderr and 'Exception ignored' not in proc.stderr


def test_scheme_needs_the_package_registered():
    """mmengine follows PACKAGE:: only for packages in its table: importing mmscalenet adds it."""
    import mmscalenet  # noqa: F401
    from mmengine.config.utils import _get_package_and_cfg_path
    assert _get_package_and_cfg_path(f'mmscalenet::{COCO_CFG}') == ('mmscalenet', COCO_CFG)


def test_metafiles_list_every_shipped_config():
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    listed = {}
    for meta_path in index['Import']:
        meta = yaml.safe_load(open(osp.join(ROOT, meta_path)))
        for model in meta['Models']:
            assert osp.isfile(osp.join(ROOT, model['Config'])), model['Config']
            listed[model['Config']] = model
            for result in model.get('Results', []):
                source = result['Source'].lower()   # a cited figure, never presented as this project's own
                assert ('paper' in source or 'model zoo' in source) and 'not reproduced' in source, model['Name']
    shipped = {osp.relpath(p, ROOT) for folder in ('imagenet', 'coco', 'ade20k')
               for p in glob.glob(osp.join(ROOT, 'configs', folder, '*.py'))}
    assert shipped == set(listed)
    assert listed['configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py']['Results'][0]['Metrics'] == {
        'Top 1 Accuracy': 81.13}
    for foil in ('imagenet/progressive_deit-s-24l_8xb128-100e_in1k.py',
                 'imagenet/progressive_swin-t-s-depth_8xb128-100e_in1k.py'):
        scalenet = listed['configs/' + foil.replace('progressive_', 'scalenet_')]['Metadata']['Parameters']
        assert listed['configs/' + foil]['Metadata']['Parameters'] > 1.7 * scalenet   # the foil's cost, on record


def test_what_a_config_inherits_through_the_scheme_builds(tmp_path):
    """mmengine tags everything inherited through ``mmscalenet::`` with ``_scope_='mmscalenet'``; the package's
    scope registries (children of mmdet's) build those hooks and models, mmdet's own modules included."""
    import mmscalenet  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import HOOKS, MODELS
    user = tmp_path / 'my_config.py'
    user.write_text(f"_base_ = 'mmscalenet::{COCO_CFG}'\n")
    cfg = Config.fromfile(str(user))
    hook = dict(cfg.default_hooks.safe_io)
    assert hook['_scope_'] == 'mmscalenet'
    assert type(HOOKS.build(hook)).__name__ == 'SafeCheckpointIOHook'
    # the model keeps the scope of the mmdet base it came from; nested dicts are built in their parent's scope
    backbone = MODELS.build(dict(cfg.model.backbone, arch=dict(embed_dims=32, num_layers=2, num_heads=2), depth=4,
                                 img_size=64, window_size=2, init_cfg=None, _scope_=cfg.model['_scope_']))
    assert type(backbone).__name__ == 'ScaleNetViTModule' and backbone.plan.depth == 4
    assert type(MODELS.build(dict(type='ResNet', depth=18, _scope_='mmscalenet'))).__name__ == 'ResNet'


def test_every_shipped_scalenet_config_is_safe_records_metadata_and_smokes():
    """Each shipped config with a ScaleNet backbone lists SafeCheckpointIOHook, ScaleNetCheckpointMetaHook and
    WorkDirLockHook in default_hooks (so mmdet's own tools get them; custom_hooks would clash with ema.py's list) and
    shrinks to a smoke run whose tiny backbone builds; tools/expand.py's default bottleneck is the configs' one."""
    import runpy

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmscalenet  # noqa: F401
    from mmdet.registry import MODELS
    from mmscalenet.smoke import smoke_options
    checked = 0
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))):
        cfg = Config.fromfile(path)
        backbone = (cfg.get('model', None) or {}).get('backbone', None) or {}
        if not str(backbone.get('type', '')).startswith('ScaleNet'):
            continue
        hooks = {k: v['type'] for k, v in cfg.default_hooks.items()}
        assert (hooks.get('safe_io'), hooks.get('scalenet_meta'), hooks.get('work_dir_lock')) == (
            'SafeCheckpointIOHook', 'ScaleNetCheckpointMetaHook', 'WorkDirLockHook'), path
        assert 'ScaleNetCheckpointMetaHook' not in [h['type'] for h in cfg.get('custom_hooks', None) or []], path
        cfg.merge_from_dict(smoke_options(cfg, gpu=False))
        assert cfg.optim_wrapper.type == 'OptimWrapper' and cfg.train_dataloader.num_workers == 0, path
        init_default_scope('mmdet')
        tiny = MODELS.build(dict(cfg.model.backbone, init_cfg=None))
        assert sum(p.numel() for p in tiny.parameters()) < 1e6, path   # full size: 5 M to 90 M
        checked += 1
    assert checked >= 25
    backbones = runpy.run_path(osp.join(ROOT, 'configs', '_base_', 'models', 'scalenet_backbones.py'))
    expand = runpy.run_path(osp.join(ROOT, 'tools', 'expand.py'))
    assert expand['BOTTLENECK'] == dict(vit=backbones['scalenet_deit_s_24l']['adapter']['bottleneck'],
                                        swin=backbones['scalenet_swin_t_s_depth']['adapter']['bottleneck'])
