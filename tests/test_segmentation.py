"""Semantic segmentation with mmseg: the configs/ade20k/ configs, the registrations, and bad input in one line.

The ImageNet -> ADE20K steps through the tools (train, test with mIoU and overlays, infer) are in test_pipeline.py.
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import ROOT

pytest.importorskip('mmseg')

ADE_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'ade20k', '*.py')))
SCALENET_DEIT = osp.join(ROOT, 'configs', 'ade20k', 'upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py')


@pytest.fixture
def mmseg_scope():
    import mmscalenet  # noqa: F401  (registers into mmdet's and mmseg's registries)
    from mmengine.registry import DefaultScope, init_default_scope
    before = DefaultScope.get_current_instance()
    init_default_scope('mmseg')
    yield
    if before is not None:
        init_default_scope(before.scope_name)


@pytest.mark.parametrize('path', ADE_CONFIGS, ids=osp.basename)
def test_every_ade20k_config_builds_in_mmseg_and_gives_150_class_logits_at_input_size(path, mmseg_scope):
    from mmengine.config import Config
    from mmseg.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg' and cfg.model.decode_head.num_classes == 150
    model = MODELS.build(cfg.model).eval()       # weights are not loaded: init_cfg names files of a real run
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        logits = model.encode_decode(x, [dict(img_shape=(64, 96))])
    assert logits.shape == (1, 150, 64, 96) and torch.isfinite(logits).all()


def test_the_scalenet_configs_load_the_imagenet_stage_backbone_and_spread_outputs_over_the_grown_depth():
    from mmengine.config import Config
    deit = Config.fromfile(SCALENET_DEIT)
    assert deit.model.backbone.init_cfg.checkpoint == 'work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k/backbone.pth'
    assert deit.model.backbone.depth == 24 and tuple(deit.model.backbone.out_indices) == (5, 11, 17, 23)
    assert deit.model.pretrained is None
    swin = Config.fromfile(osp.join(ROOT, 'configs', 'ade20k',
                                    'upernet_scalenet-swin-t-s-depth_8xb2-160k_ade20k-512x512.py'))
    assert swin.model.backbone.init_cfg.checkpoint.endswith('scalenet_swin-t-s-depth_8xb128-100e_in1k/backbone.pth')
    for cfg in (deit, swin):
        types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert types.index('ScaleNetCheckSegLabels') == types.index('LoadAnnotations') + 1


def test_mmscalenet_components_are_in_mmseg_registries(mmseg_scope):
    from mmseg.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS
    for registry, name in ((MODELS, 'ScaleNetViT'), (MODELS, 'ScaleNetSwin'), (MODELS, 'ScaleNetSimpleFPN'),
                           (HOOKS, 'SafeCheckpointIOHook'), (HOOKS, 'ScaleNetCheckpointMetaHook'),
                           (OPTIM_WRAPPER_CONSTRUCTORS, 'ScaleNetLayerDecayOptimizerConstructor'),
                           (TRANSFORMS, 'ScaleNetCheckSegLabels')):
        assert name in registry.module_dict, (registry.name, name)


def test_mmseg_pretrained_is_taken_as_init_cfg_and_both_at_once_refused(mmseg_scope):
    from mmseg.registry import MODELS
    from mmscalenet.models import ScaleNetViT
    kw = dict(type='ScaleNetViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2), depth=4, img_size=32,
              out_type='featmap')
    model = MODELS.build(dict(kw, pretrained='pretrain/deit.pth'))
    assert isinstance(model, ScaleNetViT)
    assert model.init_cfg == dict(type='Pretrained', checkpoint='pretrain/deit.pth')
    with pytest.raises(ValueError, match='not both'):
        MODELS.build(dict(kw, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')))


def test_a_label_outside_the_classes_is_refused_naming_the_file():
    from mmscalenet.datasets.segmentation import ScaleNetCheckSegLabels, SegmentationDataError
    check = ScaleNetCheckSegLabels(num_classes=150)
    good = np.array([[0, 149], [255, 7]], dtype=np.uint8)
    assert check(dict(gt_seg_map=good, seg_map_path='a.png'))['gt_seg_map'] is good
    with pytest.raises(SegmentationDataError, match=r'b.png: labels \[150, 199\] are outside the 150 classes'):
        check(dict(gt_seg_map=np.array([[150, 3], [199, 255]], dtype=np.uint8), seg_map_path='b.png'))
    with pytest.raises(SegmentationDataError, match='after LoadAnnotations'):
        check(dict(img_path='c.jpg'))


def test_missing_annotations_and_an_empty_split_are_named_before_training(tmp_path, mmseg_scope):
    from PIL import Image
    from mmscalenet.datasets.segmentation import SegmentationDataError, check_segmentation_split
    root = tmp_path / 'ade'
    for sub in ('images/training', 'annotations/training'):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / 'images' / 'training' / f'{i}.jpg')
        if i != 1:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / 'annotations' / 'training' / f'{i}.png')
    cfg = dict(type='ADE20KDataset', data_root=str(root), pipeline=[],
               data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    with pytest.raises(SegmentationDataError, match=r'1 of 3 images have no annotation file, e\.g\. .*1\.png'):
        check_segmentation_split(cfg)
    (root / 'images' / 'empty').mkdir()
    with pytest.raises(SegmentationDataError, match='no images found under'):
        check_segmentation_split(dict(cfg, data_prefix=dict(img_path='images/empty',
                                                           seg_map_path='annotations/training')))
    with pytest.raises(SegmentationDataError, match='image folder .*missing does not exist'):
        check_segmentation_split(dict(cfg, data_prefix=dict(img_path='missing', seg_map_path='annotations')))


def test_benchmark_takes_the_backbone_of_a_segmentation_config(tmp_path, capsys):
    """tools/benchmark.py --config: the grown backbone of an ADE20K (or any) config is what gets timed, what the
    config leaves out of its adapter is the model's default; a config without a grown backbone, or with an adapter
    the model refuses, is refused in one line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmscalenet_benchmark_tool', osp.join(ROOT, 'tools', 'benchmark.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse_args(['--config', osp.join(ROOT, 'configs', 'ade20k',
                                                  'upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py'),
                             '--device', 'cpu'])
    assert (args.backbone, args.arch, args.depth, args.adapter, args.bottleneck, args.img_size, args.detection) == (
        'vit', 'deit-small', 24, 'parallel', 16, 512, True)
    swin = bench.parse_args(['--config', osp.join(ROOT, 'configs', 'ade20k',
                                                  'upernet_scalenet-swin-t-s-depth_8xb2-160k_ade20k-512x512.py'),
                             '--device', 'cpu'])
    assert (swin.backbone, swin.arch, swin.depths) == ('swin', 'swin-tiny', (2, 2, 18, 2))
    with pytest.raises(SystemExit):
        bench.parse_args(['--config', osp.join(ROOT, 'configs', 'ade20k', 'swin-t_upernet_8xb2-160k_ade20k-512x512.py'),
                          '--device', 'cpu'])
    from mmscalenet.models.adapters import parse_adapter_cfg
    for adapter, expect in (("dict(type='LoRA', alpha=4.0)", ('lora', parse_adapter_cfg(dict(type='LoRA'))['rank'])),
                            ("dict(type='ParallelAdapter')",
                             ('parallel', parse_adapter_cfg(dict(type='ParallelAdapter'))['bottleneck']))):
        (tmp_path / 'grown.py').write_text(f"model = dict(backbone=dict(type='ScaleNetViT', arch='deit-tiny', depth=24, "
                                           f"adapter={adapter}))\n")
        args = bench.parse_args(['--config', str(tmp_path / 'grown.py'), '--device', 'cpu'])
        assert (args.adapter, args.rank if args.adapter == 'lora' else args.bottleneck) == expect
    (tmp_path / 'grown.py').write_text("model = dict(backbone=dict(type='ScaleNetViT', depth=24, "
                                       "adapter=dict(type='ParallelAdapter', bottleneck=0)))\n")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.parse_args(['--config', str(tmp_path / 'grown.py'), '--device', 'cpu'])
    assert 'bottleneck' in capsys.readouterr().err
