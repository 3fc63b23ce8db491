"""The README's ImageNet -> COCO steps, run as a user runs them, with the shipped configs.

Only ``--cfg-options`` shrink them (a tiny arch, small images, a couple of iterations); the data is a tiny
ImageNet-layout folder and a tiny COCO-format set made here, under the default paths the configs name
(``data/imagenet``, ``data/coco``), and every step's output is found where the next step's config looks for it:

    tools/train.py  configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py
    tools/extract_backbone.py  work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k      (-> .../backbone.pth)
    tools/train.py  configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py (loads .../backbone.pth)
    tools/test.py   configs/coco/... work_dirs/vitdet_.../iter_2.pth
    tools/infer.py  configs/coco/... work_dirs/vitdet_.../iter_2.pth image.jpg --out pred.png

and the same ImageNet stage's backbone.pth into ADE20K semantic segmentation (mmseg's UperNet, data/ade/...):

    tools/train.py  configs/ade20k/upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py  (loads backbone.pth)
    tools/test.py   configs/ade20k/... work_dirs/upernet_.../iter_2.pth --show-dir vis   (mIoU, overlays)
    tools/infer.py  configs/ade20k/... work_dirs/upernet_.../iter_2.pth image.jpg --out seg.png
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, timm_vit

IMAGENET_CONFIG = osp.join(ROOT, 'configs', 'imagenet', 'scalenet_deit-s-24l_8xb128-100e_in1k.py')
COCO_CONFIG = osp.join(ROOT, 'configs', 'coco', 'vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py')
IMAGENET_WORK = 'work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k'
ADE_CONFIG = osp.join(ROOT, 'configs', 'ade20k', 'upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py')
ADE_WORK = 'work_dirs/upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512'
COCO_WORK = 'work_dirs/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco'

# The one shrink both stages need, applied to the same backbone entry of configs/_base_/models/scalenet_backbones.py
TINY_BACKBONE = ['model.backbone.arch._delete_=True', 'model.backbone.arch.embed_dims=32',
                 'model.backbone.arch.num_layers=2', 'model.backbone.arch.num_heads=2',
                 'model.backbone.arch.mlp_ratio=2.0', 'model.backbone.depth=4']
# Everything but the backbone that shrinks an ImageNet-stage config (both families: test_pipeline_swin.py too)
IMAGENET_SHRINK = [
    'model.num_classes=2', 'model.backbone.img_size=32',
    'train_dataloader.dataset.pipeline.1.input_size=32', 'val_dataloader.dataset.pipeline.1.input_size=32',
    'test_dataloader.dataset.pipeline.1.input_size=32',
    'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4',
    'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
    'test_dataloader.persistent_workers=False',
    'val_evaluator.topk=(1,)', 'test_evaluator.topk=(1,)',
    'optim_wrapper.type=OptimWrapper', 'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1']
IMAGENET_OPTIONS = TINY_BACKBONE + IMAGENET_SHRINK
COCO_OPTIONS = TINY_BACKBONE + [
    'model.backbone.img_size=64', 'model.backbone.window_size=2', 'model.neck.backbone_channel=32',
    'model.data_preprocessor.pad_size_divisor=64', 'model.data_preprocessor.batch_augments.0.size=(64,64)',
    'train_dataloader.dataset.pipeline.3.scale=(64,64)', 'train_dataloader.dataset.pipeline.4.crop_size=(64,64)',
    'train_dataloader.dataset.pipeline.6.size=(64,64)', 'val_dataloader.dataset.pipeline.1.scale=(64,64)',
    'test_dataloader.dataset.pipeline.1.scale=(64,64)',
    'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
    'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
    'optim_wrapper.type=OptimWrapper', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
    'model.test_cfg.rcnn.score_thr=0.0']   # a 2-iteration detector scores low: keep its boxes, so COCO metrics exist


ADE_OPTIONS = TINY_BACKBONE + [
    'model.backbone.img_size=64', 'model.backbone.out_indices=[0,1,2,3]', 'model.neck.in_channels=[32,32,32,32]',
    'model.neck.out_channels=32', 'model.decode_head.in_channels=[32,32,32,32]', 'model.decode_head.channels=16',
    'model.auxiliary_head.in_channels=32', 'model.auxiliary_head.channels=8', 'model.data_preprocessor.size=(64,64)',
    'train_dataloader.dataset.pipeline.3.scale=(128,64)', 'train_dataloader.dataset.pipeline.4.crop_size=(64,64)',
    'val_dataloader.dataset.pipeline.1.scale=(128,64)', 'test_dataloader.dataset.pipeline.1.scale=(128,64)',
    'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
    'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
    'default_hooks.logger.interval=1']


def _ade20k_set(root):
    """ADE20K layout (images/ + annotations/ per split; labels 0 = ignore, 1..150 = classes), a few images."""
    from PIL import Image
    rng = np.random.default_rng(2)
    for split, n in (('training', 4), ('validation', 2)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            labels = np.zeros((48, 80), np.uint8)
            labels[:24] = 1 + i
            labels[24:, :40] = 13
            pixels = (rng.integers(0, 40, (48, 80, 3)) + 12 * labels[..., None]).astype(np.uint8)
            Image.fromarray(pixels).save(osp.join(root, 'images', split, f'ADE_{split}_{i:08d}.jpg'))
            Image.fromarray(labels).save(osp.join(root, 'annotations', split, f'ADE_{split}_{i:08d}.png'))


def _imagenet_folder(root):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (('train', 4), ('val', 2)):
        for c, wnid in enumerate(('n01440764', 'n01443537')):
            os.makedirs(osp.join(root, split, wnid), exist_ok=True)
            for k in range(n):
                pixels = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8) + np.uint8(150 * c)
                Image.fromarray(pixels).save(osp.join(root, split, wnid, f'{wnid}_{k}.JPEG'))


def _coco_set(root):
    """COCO-format train2017 / val2017 with one box + polygon per image, under COCO's 80 category names."""
    from PIL import Image
    rng = np.random.default_rng(1)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    from mmdet.datasets import CocoDataset
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CocoDataset.METAINFO['classes'])]
    for split, n in (('train2017', 4), ('val2017', 2)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            pixels = rng.integers(0, 40, (64, 64, 3), dtype=np.uint8)
            x, y, w, h = 8 + 4 * i, 10, 30, 24
            pixels[y:y + h, x:x + w] = 220
            name = f'{i:012d}.jpg'
            Image.fromarray(pixels).save(osp.join(root, split, name))
            images.append(dict(id=i + 1, file_name=name, width=64, height=64))
            annotations.append(dict(id=i + 1, image_id=i + 1, category_id=categories[i % 2]['id'], iscrowd=0,
                                    bbox=[x, y, w, h], area=float(w * h),
                                    segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _tool(cwd, *args, timeout=420):
    env = dict(os.environ, PYTHONPATH=ROOT, MMSCALENET_THREADS='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'tools/{args[0]} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """Run the five steps once, in a fresh folder as the user's working directory; returns their logs."""
    cwd = tmp_path_factory.mktemp('pipeline')
    _imagenet_folder(str(cwd / 'data' / 'imagenet'))
    _coco_set(str(cwd / 'data' / 'coco'))
    pretrained = str(cwd / 'deit_local.pth')   # stands for timm's DeiT-S download: same layout, tiny arch
    torch.save(timm_vit(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2.0, img_size=32, patch_size=16,
                        num_classes=2).state_dict(), pretrained)
    logs = {}
    logs['imagenet'] = _tool(cwd, 'train.py', IMAGENET_CONFIG, '--cfg-options', *IMAGENET_OPTIONS,
                             f'model.init_cfg.checkpoint={pretrained}')
    logs['extract'] = _tool(cwd, 'extract_backbone.py', IMAGENET_WORK)
    logs['coco'] = _tool(cwd, 'train.py', COCO_CONFIG, '--cfg-options', *COCO_OPTIONS)
    checkpoint = f'{COCO_WORK}/iter_2.pth'
    logs['test'] = _tool(cwd, 'test.py', COCO_CONFIG, checkpoint, '--cfg-options', *COCO_OPTIONS)
    logs['infer'] = _tool(cwd, 'infer.py', COCO_CONFIG, checkpoint, 'data/coco/val2017/000000000000.jpg',
                          '--out', 'pred.png', '--score-thr', '0.0', '--cfg-options', *COCO_OPTIONS)
    _ade20k_set(str(cwd / 'data' / 'ade' / 'ADEChallengeData2016'))
    logs['ade'] = _tool(cwd, 'train.py', ADE_CONFIG, '--cfg-options', *ADE_OPTIONS)
    ade_checkpoint = f'{ADE_WORK}/iter_2.pth'
    logs['ade_test'] = _tool(cwd, 'test.py', ADE_CONFIG, ade_checkpoint, '--show-dir', 'vis', '--cfg-options',
                             *ADE_OPTIONS)
    logs['ade_infer'] = _tool(cwd, 'infer.py', ADE_CONFIG, ade_checkpoint,
                              'data/ade/ADEChallengeData2016/images/validation/ADE_validation_00000000.jpg',
                              '--out', 'seg.png', '--cfg-options', *ADE_OPTIONS)
    return dict(cwd=cwd, logs=logs, pretrained=pretrained)


def test_imagenet_stage_grows_the_pretrained_model_and_keeps_its_best(pipeline):
    log = pipeline['logs']['imagenet']
    assert 'into a 2->4 layer model' in log                      # the local DeiT grown at load
    assert 'loaded the 2-class head' in log
    assert 'accuracy/top1' in log
    work = pipeline['cwd'] / IMAGENET_WORK
    assert list(work.glob('best_accuracy_top1_epoch_*.pth'))


def test_extract_writes_the_backbone_where_the_coco_config_looks(pipeline):
    from mmengine.config import Config

    from mmscalenet.checkpoint import safe_load, split_checkpoint
    out = pipeline['cwd'] / IMAGENET_WORK / 'backbone.pth'
    assert out.is_file() and f'-> {IMAGENET_WORK}/backbone.pth' in pipeline['logs']['extract']
    coco = Config.fromfile(COCO_CONFIG)
    assert coco.model.backbone.init_cfg.checkpoint == f'{IMAGENET_WORK}/backbone.pth'
    state, meta = split_checkpoint(safe_load(str(out)))
    assert meta['sources'] == [0, 1, 0, 1] and meta['adapter']['bottleneck'] == 16
    assert any(k.startswith('positions.3.adapter_mlp') for k in state)


def test_coco_stage_starts_from_the_imagenet_stage(pipeline):
    log = pipeline['logs']['coco']
    assert f'from {IMAGENET_WORK}/backbone.pth into a 2->4 layer model' in log
    assert 'plain 2-layer checkpoint, grown at load' not in log  # not the raw-timm start
    assert "sharing_rule='base'" in log
    assert 'coco/bbox_mAP' in log and (pipeline['cwd'] / COCO_WORK / 'iter_2.pth').is_file()


def test_coco_test_and_infer_use_the_trained_detector(pipeline):
    assert 'coco/bbox_mAP' in pipeline['logs']['test'] and 'coco/segm_mAP' in pipeline['logs']['test']
    assert 'detection(s) with score >= 0.0' in pipeline['logs']['infer']
    from PIL import Image
    assert Image.open(pipeline['cwd'] / 'pred.png').size == (64, 64)


def test_ade20k_stage_starts_from_the_imagenet_stage_and_tests_and_infers(pipeline):
    """The ImageNet stage's backbone.pth into mmseg's UperNet: trained, tested (mIoU, overlays), run on an image."""
    from PIL import Image
    log = pipeline['logs']['ade']
    assert f'from {IMAGENET_WORK}/backbone.pth into a 2->4 layer model' in log
    assert 'plain 2-layer checkpoint, grown at load' not in log
    assert 'mIoU' in log and (pipeline['cwd'] / ADE_WORK / 'iter_2.pth').is_file()
    assert "'mIoU'" in pipeline['logs']['ade_test']
    overlays = list((pipeline['cwd'] / ADE_WORK).glob('vis/vis_data/vis_image/*.png'))
    assert len(overlays) == 2
    assert 'class(es) in 80x48 pixels' in pipeline['logs']['ade_infer']
    for name in ('seg.png', 'seg_mask.png'):
        assert Image.open(pipeline['cwd'] / name).size == (80, 48)


def test_raw_timm_start_is_one_override_and_said_so(pipeline):
    """The COCO config from the plain checkpoint (grown at load) instead of the ImageNet stage: logged as such."""
    cwd = pipeline['cwd']
    log = _tool(cwd, 'train.py', COCO_CONFIG, '--work-dir', 'work_dirs/raw_start', '--cfg-options', *COCO_OPTIONS,
                'train_cfg.max_iters=1', 'train_cfg.val_interval=10', f'model.backbone.init_cfg.checkpoint='
                f'{pipeline["pretrained"]}')
    assert 'plain 2-layer checkpoint, grown at load to 4 positions' in log


def test_a_mismatched_backbone_stops_with_the_options_that_match(pipeline):
    """The ImageNet-stage backbone into a COCO model with another adapter size: one line, both values, the fix."""
    cwd = pipeline['cwd']
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), COCO_CONFIG, '--work-dir',
                           'work_dirs/mismatch', '--cfg-options', *COCO_OPTIONS, 'model.backbone.adapter.bottleneck=8'],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "'bottleneck': 16" in proc.stderr and "'bottleneck': 8" in proc.stderr
    assert '--cfg-options model.backbone.adapter.bottleneck=16' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_no_tool_runs_the_config_text_stored_in_a_run_checkpoint(pipeline, tmp_path):
    """A run checkpoint whose ``meta.cfg`` carries Python: extract, export, test and --resume read it; none runs it."""
    from mmscalenet.checkpoint import safe_load   # allows the data types mmengine writes (HistoryBuffer, numpy)
    cwd = pipeline['cwd']
    best = sorted((cwd / IMAGENET_WORK).glob('best_accuracy_top1_epoch_*.pth'))[-1]
    obj = safe_load(str(best))
    marker = tmp_path / 'PAYLOAD_RAN'
    obj['meta']['cfg'] = f"__import__('pathlib').Path({str(marker)!r}).touch()\n" + obj['meta']['cfg']
    work = cwd / 'work_dirs' / 'payload'
    work.mkdir(parents=True)
    poisoned = work / 'epoch_1.pth'
    torch.save(obj, str(poisoned))
    (work / 'last_checkpoint').write_text(str(poisoned))

    out = _tool(cwd, 'extract_backbone.py', str(work))
    assert 'backbone.pth' in out and (work / 'backbone.pth').is_file()
    _tool(cwd, 'export.py', str(poisoned), str(tmp_path / 'exported.safetensors'), '--format', 'scalenet')
    _tool(cwd, 'test.py', IMAGENET_CONFIG, str(poisoned), '--work-dir', str(tmp_path / 'test'), '--cfg-options',
          *IMAGENET_OPTIONS)
    resumed = _tool(cwd, 'train.py', IMAGENET_CONFIG, '--work-dir', str(tmp_path / 'resumed'), '--resume',
                    str(poisoned),
                    '--cfg-options', *IMAGENET_OPTIONS, 'train_cfg.max_epochs=2',
                    'model.init_cfg.checkpoint=moved_away.pth')   # resuming needs no pretrained file: not loaded
    assert '--resume: model.init_cfg not loaded' in resumed
    assert not marker.exists()
    # and the same text, executed, would have run: the payload is real
    exec(compile(obj['meta']['cfg'].split('\n', 1)[0], 'payload', 'exec'))
    assert marker.exists()
