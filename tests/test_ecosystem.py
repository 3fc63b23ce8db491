"""What OpenMMLab and timm users expect: timm's model API and registered names, mmengine's init_cfg on the
registered backbone, a fast offline error for ``timm:NAME``, adapter and depth overrides from the command line."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT, TINY_ARCH, timm_vit
from mmscalenet.checkpoint import CheckpointError, save_scalenet
from mmscalenet.models import ScaleNetViT


def _pre_logits(timm_model, x):
    return timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)


# ---- timm's model interface -----------------------------------------------------------------------------------
def test_timm_interface_on_the_backbone(tiny_timm):
    model = ScaleNetViT(TINY_ARCH, depth=6, img_size=32, patch_size=8).eval()
    model.load_pretrained(tiny_timm.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 17, 64) and model.num_features == 64
        pooled = model.forward_head(feats, pre_logits=True)
        assert torch.equal(pooled, model(x)[0])          # forward stays OpenMMLab's tuple of the class token
        assert isinstance(model.get_classifier(), nn.Identity)
        model.reset_classifier(7)
        assert model.forward_head(feats).shape == (2, 7) and model.pretrained_cfg['num_classes'] == 7
        model.reset_classifier(0, global_pool='avg')
        assert torch.allclose(model.forward_head(feats), feats[:, 1:].mean(1))
    assert model.pretrained_cfg['input_size'] == (3, 32, 32)
    model.set_grad_checkpointing()
    assert model.with_cp
    with pytest.raises(ValueError, match='global_pool'):
        model.reset_classifier(3, global_pool='max')
    dense = ScaleNetViT(TINY_ARCH, img_size=32, patch_size=8, out_type='featmap')
    assert dense.forward_features(x).shape == (2, 64, 4, 4)


@pytest.mark.parametrize('name,width', [('scalenet_deit_tiny_patch16_224_d24', 192),
                                        ('scalenet_deit_small_patch16_224_d24', 384),
                                        ('scalenet_deit_base_patch16_224_d24', 768)])
def test_timm_names_registered(name, width):
    import timm
    import mmscalenet  # noqa: F401  (registers the names)
    assert name in timm.list_models('scalenet_*')
    with torch.device('meta'):   # no memory, no init cost: only the structure
        model = timm.create_model(name, num_classes=5)
    assert model.num_features == width and model.plan.depth == 24 and model.head.out_features == 5


def test_timm_create_model_with_a_local_file(tmp_path):
    import timm
    import mmscalenet  # noqa: F401
    from mmscalenet.models.timm_models import ScaleNetVisionTransformer
    small = dict(arch=TINY_ARCH, img_size=32, patch_size=8)
    base = timm_vit(num_classes=10)
    path = tmp_path / 'deit_like.pth'
    torch.save({'model': base.state_dict()}, path)                  # a DeiT-layout file with its head
    model = timm.create_model('scalenet_deit_small_patch16_224_d24', pretrained=True, num_classes=10, depth=4,
                              pretrained_cfg_overlay=dict(file=str(path)), **small).eval()
    assert isinstance(model, ScaleNetVisionTransformer)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - base(x)).abs().max() < 1e-5               # D = L, zero adapters: timm's logits
    grown = timm.create_model('scalenet_deit_small_patch16_224_d24', pretrained=True, num_classes=10, depth=8,
                              pretrained_cfg_overlay=dict(file=str(path)), **small).eval()
    assert grown.plan.depth == 8 and torch.equal(grown.head.weight, base.head.weight)
    grown_from_file = grown
    assert grown.plan.sources == (0, 1, 2, 3, 0, 1, 2, 3) and len(grown.blocks) == 4
    # a ScaleNet-format file saved at depth 8 loads back exactly, through the same timm call
    grown = timm.create_model('scalenet_deit_small_patch16_224_d24', num_classes=10, depth=8, **small).eval()
    with torch.no_grad():
        for p in grown.parameters():
            p.normal_(std=0.02)
    saved = tmp_path / 'grown.pth'
    save_scalenet(grown, str(saved), head=grown.head.state_dict())
    again = timm.create_model('scalenet_deit_small_patch16_224_d24', pretrained=True, num_classes=10, depth=8,
                              pretrained_cfg_overlay=dict(file=str(saved)), **small).eval()
    with torch.no_grad():
        assert torch.equal(again(x), grown(x))
    in_memory = timm.create_model('scalenet_deit_small_patch16_224_d24', pretrained=True, num_classes=10, depth=8,
                                  pretrained_cfg_overlay=dict(state_dict=base.state_dict()), **small).eval()
    with torch.no_grad():   # expanded by the filter as from the file (timm drops a head of another class count)
        assert torch.equal(_pre_logits(in_memory, x), _pre_logits(grown_from_file, x))
    cfg = timm.data.resolve_data_config({}, model=again)
    assert cfg['input_size'] == (3, 224, 224) and cfg['interpolation'] == 'bicubic'


# ---- mmengine init_cfg on the registered backbone ----------------------------------------------------------------
def _build(mmdet_scope, **kw):
    from mmdet.registry import MODELS
    cfg = dict(type='ScaleNetViT', arch=TINY_ARCH, depth=6, img_size=32, patch_size=8)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_registered_backbone_takes_mmengine_initializers(mmdet_scope):
    from mmengine.model import BaseModule
    model = _build(mmdet_scope, init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.5, bias=0.25),
                                          dict(type='Constant', layer='Conv2d', val=0.125, bias=0.0)])
    assert isinstance(model, BaseModule) and isinstance(model, ScaleNetViT)
    model.init_weights()
    qkv = model.blocks[0].attn.qkv
    assert 0.3 < qkv.weight.std() < 0.6 and torch.all(qkv.bias == 0.25)
    assert torch.all(model.patch_embed.proj.weight == 0.125)
    # adapters keep their own start (zero up-projection), so inserted positions still start as copies
    assert all(torch.all(p.adapter_attn.up.weight == 0) for p in model.positions)
    with pytest.raises(TypeError, match='init_cfg entries'):
        _build(mmdet_scope, init_cfg=['TruncNormal'])


def test_registered_backbone_pretrained_prefix(mmdet_scope, tiny_timm, tmp_path):
    path = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': {f'encoder.{k}': v for k, v in tiny_timm.state_dict().items()}}, path)
    model = _build(mmdet_scope, depth=4, adapter=None,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='encoder.')).eval()
    model.init_weights()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (model(x)[0] - _pre_logits(tiny_timm, x)).abs().max() < 1e-5
    bad = _build(mmdet_scope, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    with pytest.raises(CheckpointError, match="prefix 'backbone.' matches no key.*encoder."):
        bad.init_weights()


# ---- timm:NAME without a network ---------------------------------------------------------------------------------
def test_timm_name_offline_fails_fast(tmp_path):
    """Neither an unreachable hub nor HF_HUB_OFFLINE=1 may cost the hub's minute of retries."""
    code = ('import os, time\n'
            'import mmscalenet.checkpoint as c\n'
            'for env in ({"HF_ENDPOINT": "http://127.0.0.1:9"}, {"HF_HUB_OFFLINE": "1"}):\n'
            '    os.environ.update(env)\n'
            '    start = time.monotonic()\n'
            '    try:\n        c.resolve_checkpoint("timm:deit_tiny_patch16_224.fb_in1k")\n'
            '    except c.CheckpointError as e:\n        print("ERR", round(time.monotonic() - start, 1), e)\n')
    env = dict(os.environ, HF_HOME=str(tmp_path / 'hf'), TORCH_HOME=str(tmp_path / 'torch'),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    env.pop('HF_HUB_OFFLINE', None)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    errors = [line.split(' ', 2) for line in proc.stdout.splitlines() if line.startswith('ERR')]
    assert len(errors) == 2, proc.stdout + proc.stderr        # one line each, no traceback
    for _, seconds, message in errors:
        assert 'pass the local file' in message and 'deit_tiny_patch16_224' in message
        assert float(seconds) < 10, seconds


# ---- overrides from the command line -----------------------------------------------------------------------------
def test_adapter_type_switch_drops_the_other_types_keys():
    with pytest.warns(UserWarning, match=r"ignoring \['bottleneck', 'sites'\]"):
        model = ScaleNetViT(TINY_ARCH, depth=6, img_size=32, patch_size=8,
                            adapter=dict(type='LoRA', bottleneck=8, sites=('attn', 'mlp'), rank=2))
    assert model.adapter_cfg['type'] == 'LoRA' and model.adapter_cfg['rank'] == 2
    with pytest.raises(TypeError, match=r"unknown arguments \['botleneck'\]"):
        ScaleNetViT(TINY_ARCH, img_size=32, patch_size=8, adapter=dict(type='ParallelAdapter', botleneck=8))


def test_depth_and_adapter_overrides_on_a_coco_config(mmdet_scope):
    from mmscalenet.tools_common import load_config
    cfg = load_config(osp.join(ROOT, 'configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'),
                      {'model.backbone.depth': 18, 'model.backbone.adapter.type': 'LoRA'})
    assert 'num_layers' not in cfg.optim_wrapper.paramwise_cfg
    from mmdet.registry import MODELS
    backbone_cfg = dict(cfg.model.backbone, arch=TINY_ARCH, img_size=64, patch_size=16, window_size=2,
                        init_cfg=None)
    with pytest.warns(UserWarning, match='belong to another adapter type'):
        backbone = MODELS.build(backbone_cfg)
    assert backbone.plan.depth == 18 and backbone.adapter_cfg['type'] == 'LoRA'
    from mmscalenet.engine.layer_decay import layer_id_fn
    # no pinned num_layers to contradict the new depth; the decay runs over D = 18 or, by default, the base depth
    assert layer_id_fn(backbone, cfg.optim_wrapper.paramwise_cfg.get('num_layers'), 'deepest')[1] == 18
    assert layer_id_fn(backbone, cfg.optim_wrapper.paramwise_cfg.get('num_layers'))[1] == TINY_ARCH['num_layers']
    kept = load_config(osp.join(ROOT, 'configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'),
                       {'model.backbone.depth': 18, 'optim_wrapper.paramwise_cfg.num_layers': 18})
    assert kept.optim_wrapper.paramwise_cfg.num_layers == 18


def test_dict_action_values_on_the_command_line(mmdet_scope):
    """mmengine's DictAction syntax: a name for an arch dict, comma lists and tuples reach the config."""
    import importlib.util
    from mmscalenet.tools_common import ToolError, load_config
    spec = importlib.util.spec_from_file_location('mmscalenet_tool_test', f'{ROOT}/tools/test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    options = tool.parse_args(['c.py', 'c.pth', '--cfg-options', 'model.backbone.arch=deit-tiny',
                               'model.backbone.global_indices=1,3', 'model.backbone.img_size=(48,64)']).cfg_options
    cfg = load_config(osp.join(ROOT, 'configs/demo/digits_cls_scalenet.py'), options)
    assert cfg.model.backbone.arch == 'deit-tiny' and cfg.model.backbone.global_indices == [1, 3]
    assert cfg.model.backbone.img_size == (48, 64)
    with pytest.raises(ToolError, match='set its keys one by one'):   # a component replaced by a plain value
        load_config(osp.join(ROOT, 'configs/demo/digits_cls_scalenet.py'), {'model.backbone': 'ScaleNetViT'})


# ---- OpenMMLab backbone conventions: frozen_stages, norm_eval, Swin's BaseModule face, pos-embed resize ---------
SWIN_TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))


def _build_swin(**kw):
    from mmdet.registry import MODELS
    cfg = dict(type='ScaleNetSwin', arch=SWIN_TINY, depths=(2, 2, 4, 2), img_size=64)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_vit_frozen_stages_freeze_positions_and_the_blocks_they_run(mmdet_scope):
    model = _build(mmdet_scope, frozen_stages=2, norm_eval=True)   # plan 0 1 2 3 0 1
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {'pos_embed', 'cls_token', 'patch_embed.proj.weight'} <= frozen
    assert any(n.startswith('positions.1.') for n in frozen) and 'blocks.1.attn.qkv.weight' in frozen
    assert not any(n.startswith(('positions.2.', 'positions.4.', 'blocks.2.', 'norm.')) for n in frozen)
    model.train()
    assert not model.positions[1].training and model.positions[4].training
    assert not any(m.training for m in model.modules() if isinstance(m, nn.LayerNorm))   # norm_eval
    assert 'positions.5.adapter_attn.up.weight' not in frozen   # an inserted position on a frozen block trains
    everything = _build(mmdet_scope, frozen_stages=6)
    assert not any(p.requires_grad for p in everything.parameters())
    with pytest.raises(ValueError, match='frozen_stages must be an integer in \\[-1, 6\\]'):
        _build(mmdet_scope, frozen_stages=7)


def test_swin_frozen_stages_as_mmdet(mmdet_scope):
    model = _build_swin(frozen_stages=1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert all(n.startswith(('patch_embed.', 'layers.0.', 'norm0.')) for n in frozen)
    assert 'patch_embed.proj.weight' in frozen and 'layers.0.blocks.0.attn.qkv.weight' in frozen
    assert 'norm0.weight' in frozen
    model.train()
    assert not model.layers[0].training and model.layers[1].training and model.patch_embed.proj.training is False
    assert model.layers[1].positions[0].training and model.norm1.training
    assert _build_swin(frozen_stages=-1).patch_embed.proj.weight.requires_grad


def test_swin_is_a_base_module_with_every_initializer_and_prefix(mmdet_scope, tmp_path):
    from mmengine.model import BaseModule
    from mmscalenet.models.swin import ScaleNetSwin
    model = _build_swin(init_cfg=[dict(type='Kaiming', layer='Linear'), dict(type='Constant', layer='LayerNorm',
                                                                             val=0.5, bias=0.0)])
    assert isinstance(model, BaseModule) and isinstance(model, ScaleNetSwin)
    model.init_weights()
    assert torch.all(model.norm3.weight == 0.5)
    assert all(torch.all(p.adapter_attn.up.weight == 0) for s in model.layers for p in s.positions)
    source = ScaleNetSwin(arch=SWIN_TINY, depths=(2, 2, 4, 2), img_size=64)
    path = tmp_path / 'det.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}, path)
    loaded = _build_swin(init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    loaded.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(loaded.eval()(x), source.eval()(x)))


def test_mmengine_load_checkpoint_resizes_pos_embed_for_384(mmdet_scope, tmp_path):
    from mmengine.runner import load_checkpoint
    small = _build(mmdet_scope)                                     # 32 px: 4x4 grid
    path = tmp_path / 'vit.pth'
    torch.save({'state_dict': small.state_dict()}, path)
    big = _build(mmdet_scope, img_size=48)                          # 6x6 grid, as 224 -> 384
    load_checkpoint(big, str(path), map_location='cpu', strict=True)
    from timm.layers import resample_abs_pos_embed
    want = resample_abs_pos_embed(small.pos_embed.detach(), [6, 6], [4, 4], num_prefix_tokens=1, antialias=False)
    assert torch.allclose(big.pos_embed, want) and big.pos_embed.shape == (1, 37, 64)
    assert torch.equal(big.blocks[0].attn.qkv.weight, small.blocks[0].attn.qkv.weight)


# ---- trained checkpoints through mmdet's / mmengine's own loading APIs ---------------------------------------------
_LOAD_IN_A_PLAIN_PROCESS = r'''
import os, sys
cfg, path, payload, marker = sys.argv[1:5]
from mmdet.apis import DetInferencer, init_detector
model = init_detector(cfg, path, device='cpu')     # the config's custom_imports import mmscalenet
assert type(model.backbone).__name__ == 'ScaleNetViTModule'
DetInferencer(model=cfg, weights=path, device='cpu', show_progress=False)
from mmengine.runner import load_checkpoint
load_checkpoint(model.backbone, path, map_location='cpu', revise_keys=[(r'^backbone\.', '')])
try:
    load_checkpoint(model, payload, map_location='cpu')
    print('PAYLOAD LOADED')
except Exception as err:
    print('REFUSED', type(err).__name__)
print('MARKER', os.path.exists(marker))
'''


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_trained_checkpoint_loads_through_init_detector_and_load_checkpoint(mmdet_scope, tmp_path):
    """mmengine writes HistoryBuffer logs and numpy scalars into a run's checkpoint; torch's weights_only default
    refused them in init_detector / DetInferencer / load_checkpoint. After the config's ``import mmscalenet`` they
    load, and a file with a payload is still refused without running it."""
    import numpy as np
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    cfg_path = osp.join(ROOT, 'configs', 'demo', 'digits_det_scalenet.py')
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    hub = MessageHub.get_instance('eco-trained-ckpt')
    hub.update_scalar('train/loss', np.float64(0.5))
    path, payload, marker = tmp_path / 'iter_8.pth', tmp_path / 'evil.pth', tmp_path / 'ran'
    save_checkpoint({'meta': dict(iter=8, seed=np.int64(0)), 'state_dict': model.state_dict(),
                     'message_hub': hub.state_dict()}, str(path))
    torch.save({'state_dict': {}, 'meta': _Payload(str(marker))}, str(payload))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-c', _LOAD_IN_A_PLAIN_PROCESS, cfg_path, str(path), str(payload),
                           str(marker)], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'REFUSED UnpicklingError' in proc.stdout and 'MARKER False' in proc.stdout, proc.stdout
    assert not marker.exists()
