"""The segmentation half of the embedded demo (mmscalenet/demo/segmentation.py, configs/demo/digits_seg_*.py): one
tiny run of the half (three rows, random backbones in the classification half's format, two iterations each) feeds
most tests; the class maps are checked against the scenes' instance masks without files."""
import glob
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import ROOT, config_lrs

pytest.importorskip('mmseg')

from mmscalenet.demo import ROWS, digit_scenes, segmentation  # noqa: E402

TINY_ROWS = ('base', 'scalenet', 'scratch')
SEG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', 'digits_seg_*.py')))


def save_random_backbones(work_dir, rows=TINY_ROWS):
    """What the classification half writes for each row (its digits_cls_<row>.py backbone, ScaleNet checkpoint
    format), with random weights."""
    from mmengine.config import Config

    from mmscalenet.checkpoint import save_scalenet
    from mmscalenet.models import ScaleNetViT
    torch.manual_seed(0)
    for row in rows:
        kwargs = dict(Config.fromfile(osp.join(ROOT, 'configs', 'demo', f'digits_cls_{row}.py')).model.backbone)
        kwargs.pop('type')
        save_scalenet(ScaleNetViT(**kwargs), osp.join(work_dir, dict(ROWS)[row]))


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """The half on 8 train / 4 val scenes, two iterations per row, in this process (MMSCALENET_JOBS=1)."""
    work = tmp_path_factory.mktemp('demo_seg')
    save_random_backbones(str(work))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('MMSCALENET_JOBS', '1')
        section = segmentation.run(str(work), seed=3, runs=list(TINY_ROWS), max_iters=2, num_train=8, num_val=4)
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    return dict(work=work, section=section, summary=summary)


# ---- class maps -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('style', ['cluttered', 'plain'])
def test_class_map_is_the_union_of_the_instance_masks(style):
    """Exact, in memory: every pixel of class d + 1 lies in a mask of digit d and every such mask pixel has it;
    background (0) is where no mask is. Cluttered scenes overlap, so this also checks that masks never share pixels."""
    for image, instances in digit_scenes.iter_scenes('val', 6, seed=5, canvas=64, style=style):
        seg = digit_scenes.class_map(instances, image.shape[:2])
        assert seg.shape == image.shape[:2] and seg.dtype == np.uint8
        masks = np.stack([inst['mask'].astype(bool) for inst in instances])
        assert masks.sum(0).max() <= 1                                # no pixel in two instances
        np.testing.assert_array_equal(seg == 0, ~masks.any(0))
        for digit in range(10):
            union = np.zeros(seg.shape, dtype=bool)
            for inst in instances:
                if inst['label'] == digit:
                    union |= inst['mask'].astype(bool)
            np.testing.assert_array_equal(seg == digit + 1, union)


def test_iter_scenes_are_the_scenes_generate_writes(tmp_path):
    from PIL import Image
    paths = digit_scenes.generate(str(tmp_path / 'scenes'), num_train=2, num_val=3, seed=4, canvas=64)
    with open(paths['val_ann']) as f:
        anns = json.load(f)['annotations']
    for i, (image, instances) in enumerate(digit_scenes.iter_scenes('val', 3, seed=4, canvas=64)):
        np.testing.assert_array_equal(np.asarray(Image.open(osp.join(paths['val_img'], f'{i:06d}.png'))), image)
        written = [a for a in anns if a['image_id'] == i + 1]
        assert [a['category_id'] - 1 for a in written] == [inst['label'] for inst in instances]
        for a, inst in zip(written, instances):
            np.testing.assert_array_equal(digit_scenes.rle_decode(a['segmentation']), inst['mask'])


def test_scenes_written_again_with_other_settings_leave_no_stale_scene(tmp_path):
    root = str(tmp_path / 'scenes')
    segmentation.write_scenes(root, num_train=3, num_val=2, seed=1)
    stamp = osp.getmtime(osp.join(root, 'scenes.json'))
    assert segmentation.write_scenes(root, num_train=3, num_val=2, seed=1) == dict(root=root)    # reused
    assert osp.getmtime(osp.join(root, 'scenes.json')) == stamp
    segmentation.write_scenes(root, num_train=2, num_val=1, seed=1)
    for sub in ('img', 'ann'):
        assert sorted(glob.glob(osp.join(root, sub, 'train', '*.png'))) == [
            osp.join(root, sub, 'train', f'{i:06d}.png') for i in range(2)]
        assert len(glob.glob(osp.join(root, sub, 'val', '*.png'))) == 1


# ---- configs ------------------------------------------------------------------------------------------------------
def test_rows_are_the_rows_of_ROWS_that_have_a_config(tmp_path, monkeypatch):
    assert segmentation.available_rows() == [row for row, _ in ROWS
                                             if osp.isfile(osp.join(ROOT, 'configs', 'demo', f'digits_seg_{row}.py'))]
    assert set(TINY_ROWS) <= set(segmentation.available_rows())
    (tmp_path / 'digits_seg_scratch.py').write_text('')
    (tmp_path / 'digits_seg_progressive.py').write_text('')
    monkeypatch.setattr(segmentation, 'CONFIG_DIR', str(tmp_path))
    assert segmentation.available_rows() == ['progressive', 'scratch']     # ROWS' order; a config file adds a row


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_seg_configs_build_in_mmseg_and_give_11_class_logits_at_scene_size(path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg' and cfg.model.decode_head.num_classes == 11
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('work_dirs/demo/classification/')
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model).eval()
    size = segmentation.CANVAS
    with torch.no_grad():
        logits = model.encode_decode(torch.randn(1, 3, size, size), [dict(img_shape=(size, size))])
    assert logits.shape == (1, 11, size, size) and torch.isfinite(logits).all()


def _seg_lrs(row, **paramwise):
    """lr of every tensor under configs/demo/digits_seg_<row>.py's optimizer (model built on the meta device)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', f'digits_seg_{row}.py'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return config_lrs(cfg, lambda c: MODELS.build(c.model), **paramwise)[0]


@pytest.mark.parametrize('row', ['scalenet', 'progressive', 'base'])
def test_seg_recipe_steps_each_shared_tensor_once_per_use(row):
    """The segmentation recipe's shared_lr='per_use' (the three-seed finding of docs/detection_transfer.md,
    section 4): the grown row's shared blocks, each run by 2 positions, train at half their decayed lr; its adapters,
    embeddings and head keep theirs; the rows without shared tensors are untouched."""
    shipped, undivided = _seg_lrs(row), _seg_lrs(row, shared_lr=1.0)
    assert shipped.keys() == undivided.keys()
    shared = [n for n in shipped if n.startswith('backbone.blocks.')]
    assert len(shared) > 4 * 8
    for name, lr in shipped.items():
        expect = undivided[name] * (0.5 if row == 'scalenet' and name in shared else 1.0)
        assert lr == pytest.approx(expect), name


# ---- the tiny run ---------------------------------------------------------------------------------------------------
def test_summary_has_a_finite_miou_per_row(tiny_run):
    section = tiny_run['summary']['segmentation']
    assert section == json.loads(json.dumps(tiny_run['section']))
    for row, depth in zip(TINY_ROWS, (4, 8, 8)):
        entry = section[row]
        assert math.isfinite(entry['mIoU']) and 0.0 <= entry['mIoU'] <= 100.0
        assert entry['depth'] == depth and entry['iters'] == 2 and entry['train_seconds'] >= 0
        assert entry['config'] == f'configs/demo/digits_seg_{row}.py'
        assert entry['backbone_params'] > 0 and entry['params'] == entry['backbone_params']
    assert section['scalenet']['backbone_params'] < section['scratch']['backbone_params']   # shared weights
    assert (section['num_train_scenes'], section['num_val_scenes'], section['seed']) == (8, 4, 3)


def test_constant_miou_is_what_iou_metric_gives_a_background_prediction(tiny_run):
    from mmseg.evaluation import IoUMetric
    from PIL import Image
    root = tiny_run['work'] / 'segmentation' / 'scenes'
    metric = IoUMetric()
    metric.dataset_meta = dict(classes=('background',) + digit_scenes.CLASSES)
    for path in sorted(glob.glob(str(root / 'ann' / 'val' / '*.png'))):
        gt = torch.from_numpy(np.asarray(Image.open(path)).astype(np.int64))[None]
        metric.process([], [dict(pred_sem_seg=dict(data=torch.zeros_like(gt)), gt_sem_seg=dict(data=gt))])
    expected = metric.compute_metrics(metric.results)['mIoU']
    assert tiny_run['section']['constant_mIoU'] == pytest.approx(expected, abs=0.01)


def test_written_class_maps_are_the_scenes_class_maps(tiny_run):
    from PIL import Image
    root = tiny_run['work'] / 'segmentation' / 'scenes'
    scenes = digit_scenes.iter_scenes('val', 4, 3, segmentation.CANVAS, segmentation.MAX_DIGITS,
                                      segmentation.SIZE_RANGE, segmentation.STYLE)
    for i, (image, instances) in enumerate(scenes):
        np.testing.assert_array_equal(np.asarray(Image.open(root / 'img' / 'val' / f'{i:06d}.png')), image)
        np.testing.assert_array_equal(np.asarray(Image.open(root / 'ann' / 'val' / f'{i:06d}.png')),
                                      digit_scenes.class_map(instances, image.shape[:2]))


def test_markdown_table_lists_the_rows(tiny_run):
    text = (tiny_run['work'] / 'segmentation.md').read_text()
    for row in TINY_ROWS:
        mIoU = tiny_run['section'][row]['mIoU']
        assert f'| {row} | ' in text and f'{mIoU:.2f}' in text
    assert 'progressive' not in text.split('\n\n')[2]          # the table: only rows that ran
    assert 'ScaleNet' in text and 'constant background prediction' in text


def test_overlay_pngs_are_images(tiny_run):
    from PIL import Image
    files = sorted(glob.glob(str(tiny_run['work'] / 'segmentation' / 'overlay_*.png')))
    assert [osp.basename(f) for f in files] == sorted(f'overlay_{row}_{i}.png' for row in TINY_ROWS
                                                      for i in range(segmentation.NUM_PICTURES))
    for path in files:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:    # ground truth | prediction, each the scene enlarged 8x
            assert im.size == (2 * 8 * segmentation.CANVAS, 8 * segmentation.CANVAS) and im.mode == 'RGB'


# ---- errors ---------------------------------------------------------------------------------------------------------
def test_a_missing_backbone_is_one_line_naming_the_file(tmp_path, capsys):
    from mmscalenet.demo.downstream import MissingBackboneError
    save_random_backbones(str(tmp_path), rows=('base',))
    with pytest.raises(MissingBackboneError) as err:
        segmentation.run(str(tmp_path), runs=['base', 'scratch'])
    message = str(err.value)
    assert '\n' not in message and 'scratch_backbone.pth' in message and 'base_backbone' not in message
    assert 'run the classification half first' in message
    with pytest.raises(SystemExit) as exit_:
        segmentation.main(['--work-dir', str(tmp_path / 'empty')])
    assert '\n' not in str(exit_.value.code) and 'run the classification half first' in str(exit_.value.code)
    with pytest.raises(ValueError, match=r"unknown segmentation run\(s\) \['nope'\].*digits_seg_<row>\.py"):
        segmentation.run(str(tmp_path), runs=['nope'])


def test_demo_tool_spread_and_reference_cope_with_a_row_that_did_not_run(tmp_path):
    """tools/demo.py: the segmentation figures of the rows that ran are in the spread; progressive (no config yet)
    is simply absent, and a reference without segmentation figures compares the rest."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmscalenet_demo_tool_seg', osp.join(ROOT, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert [key for key in demo.FIGURES if key[0] == 'segmentation'] == [
        ('segmentation', row, 'mIoU') for row in ('base', 'scalenet', 'progressive', 'scratch')]
    runs = {seed: {'segmentation': {row: {'mIoU': 40.0 + seed} for row in TINY_ROWS}} for seed in (0, 1)}
    stats = demo.spread(runs)
    assert sorted(stats) == [f'segmentation/{row}/mIoU' for row in ('base', 'scalenet', 'scratch')]
    assert stats['segmentation/base/mIoU']['mean'] == pytest.approx(40.5)
    ref = tmp_path / 'seeds.json'
    ref.write_text(json.dumps(dict(seeds=[0, 1, 2], machine='test', stats={
        'classification/scalenet/top1': dict(mean=97.0, std=1.0, min=96.0, max=98.0)})))
    text = demo.against_reference({'classification': {'scalenet': {'top1': 96.5}}, **runs[0]}, str(ref))
    assert 'classification/scalenet/top1: 96.500, inside' in text and 'segmentation' not in text
