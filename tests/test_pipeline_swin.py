"""The ScaleNet-Swin path, as a user runs it with the shipped configs (tiny arch, tiny data):

    tools/train.py  configs/imagenet/scalenet_swin-t-s-depth_8xb128-100e_in1k.py
    tools/extract_backbone.py  work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k       (-> .../backbone.pth)
    configs/coco/mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py's backbone loads .../backbone.pth by default

Only ``--cfg-options`` shrink the ImageNet stage; the COCO config's backbone gets the same shrink of its arch and
nothing else: its default ``init_cfg`` finds the extracted file, and every tensor of it loads.
"""
import os.path as osp

import pytest
import torch

from conftest import ROOT
from test_pipeline import IMAGENET_SHRINK, _imagenet_folder, _tool

IMAGENET_CONFIG = osp.join(ROOT, 'configs', 'imagenet', 'scalenet_swin-t-s-depth_8xb128-100e_in1k.py')
COCO_CONFIG = osp.join(ROOT, 'configs', 'coco', 'mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py')
IMAGENET_WORK = 'work_dirs/scalenet_swin-t-s-depth_8xb128-100e_in1k'
ARCH = dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
GROWN = (2, 3)
TINY_BACKBONE = ['model.backbone.arch._delete_=True', 'model.backbone.arch.embed_dims=16',
                 'model.backbone.arch.depths=(2,2)', 'model.backbone.arch.num_heads=(1,2)',
                 'model.backbone.arch.window_size=4', 'model.backbone.depths=(2,3)']
IMAGENET_OPTIONS = TINY_BACKBONE + IMAGENET_SHRINK


@pytest.fixture(scope='module')
def swin_pipeline(tmp_path_factory):
    from timm.models.swin_transformer import SwinTransformer
    cwd = tmp_path_factory.mktemp('swin_pipeline')
    _imagenet_folder(str(cwd / 'data' / 'imagenet'))
    torch.manual_seed(0)   # stands for timm's Swin-T download: same layout, tiny arch
    pretrained = str(cwd / 'swin_local.pth')
    torch.save(SwinTransformer(img_size=32, patch_size=4, embed_dim=16, depths=ARCH['depths'],
                               num_heads=ARCH['num_heads'], window_size=4, num_classes=2).state_dict(), pretrained)
    logs = dict(imagenet=_tool(cwd, 'train.py', IMAGENET_CONFIG, '--cfg-options', *IMAGENET_OPTIONS,
                               f'model.init_cfg.checkpoint={pretrained}'))
    logs['extract'] = _tool(cwd, 'extract_backbone.py', IMAGENET_WORK)
    return dict(cwd=cwd, logs=logs)


def test_swin_imagenet_run_extracts_and_its_coco_config_loads_every_tensor(swin_pipeline, mmdet_scope,
                                                                            monkeypatch):
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from mmscalenet.checkpoint import read_checkpoint
    cwd, logs = swin_pipeline['cwd'], swin_pipeline['logs']
    assert 'into a (2, 2) -> (2, 3) model' in logs['imagenet']      # the local Swin grown at load
    out = cwd / IMAGENET_WORK / 'backbone.pth'
    assert out.is_file() and f'-> {IMAGENET_WORK}/backbone.pth' in logs['extract']
    assert 'ScaleNetSwin: base depth (2, 2) -> depth (2, 3)' in logs['extract']
    state, meta = read_checkpoint(str(out))
    assert meta['family'] == 'swin' and meta['depths'] == list(GROWN) and 'head.weight' in state

    cfg = Config.fromfile(COCO_CONFIG)
    backbone = cfg.model.backbone
    assert backbone.init_cfg.checkpoint == f'{IMAGENET_WORK}/backbone.pth'   # the default: no override
    backbone.arch, backbone.depths, backbone.out_indices = dict(ARCH), GROWN, (0, 1)   # the same tiny shrink
    monkeypatch.chdir(cwd)   # the user's working directory, where work_dirs/ is
    model = MODELS.build(backbone)
    model.init_weights()
    own = model.state_dict()
    stored = {k: v for k, v in state.items() if not k.startswith('head.')}
    assert [k for k in stored if k not in own] == []
    assert [k for k in stored if not torch.equal(own[k], stored[k])] == []   # read from the file: exact
    assert sorted({k.split('.')[0] for k in own if k not in stored}) == ['norm0']   # the detector's extra output
