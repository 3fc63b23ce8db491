"""Detection: dense ScaleNetViT features, necks, the sharing-aware layer decay, the COCO configs, the digit scenes and
the train / test / infer tools on them (CPU, no downloads)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, config_lrs

pytest.importorskip('mmdet')

from mmscalenet.demo import digit_scenes  # noqa: E402
from mmscalenet.models.vit import ScaleNetViT  # noqa: E402

MICRO_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0)
COCO_CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', 'coco', '*.py'))
                      if 'swin' not in osp.basename(p))   # the Swin ones: tests/test_swin.py


def dense_vit(depth=4, **kw):
    args = dict(arch=MICRO_ARCH, depth=depth, adapter=dict(type='ParallelAdapter', bottleneck=4), img_size=224,
                patch_size=16, out_type='featmap', window_size=14, use_rel_pos=True)
    args.update(kw)
    return ScaleNetViT(**args)


# ---- dense backbone -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('hw', [(224, 224), (250, 333), (1024, 1024)])
def test_featmap_shapes_window_and_global(hw):
    torch.manual_seed(0)
    model = dense_vit(global_indices=(1, 3), out_indices=(1, 3)).eval()
    assert [p.window_size for p in model.positions] == [14, 0, 14, 0]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    expected = (1, 32, -(-hw[0] // 16), -(-hw[1] // 16))
    assert isinstance(outs, tuple) and len(outs) == 2
    for out in outs:
        assert tuple(out.shape) == expected
        assert torch.isfinite(out).all()


def test_window_attention_stays_inside_windows_at_odd_sizes():
    """With window attention only, a change in one window cannot reach tokens of another window (one layer)."""
    torch.manual_seed(0)
    model = dense_vit(depth=2, window_size=4, global_indices=(), out_indices=(0,)).eval()
    x = torch.randn(1, 3, 250, 333)             # 16 x 21 tokens: padded to 16 x 24 for 4x4 windows
    y = x.clone()
    y[:, :, :16, :16] += 1.0                    # token (0, 0): window (0, 0)
    with torch.no_grad():
        a, b = model(x)[0], model(y)[0]
    changed = (a - b).abs().amax(1)[0] > 1e-6
    assert changed[:4, :4].any()
    changed[:4, :4] = False
    assert not changed.any()


def test_global_position_mixes_the_whole_map():
    torch.manual_seed(0)
    model = dense_vit(depth=2, window_size=4, global_indices=(0,), out_indices=(0,)).eval()
    x = torch.randn(1, 3, 128, 128)
    y = x.clone()
    y[:, :, :16, :16] += 1.0
    with torch.no_grad():
        diff = (model(x)[0] - model(y)[0]).abs().amax(1)[0]
    assert (diff > 1e-6).all()


def test_gradients_reach_shared_weights_adapters_rel_pos_and_neck(mmdet_scope):
    from mmscalenet.models.simple_fpn import ScaleNetSimpleFPN
    torch.manual_seed(0)
    model = dense_vit(depth=4, window_size=4, global_indices=(3,), function_preserving=True)
    with torch.no_grad():   # open the gates, so that inserted positions contribute
        for pos in model.positions:
            if pos.gate_attn is not None:
                pos.gate_attn.fill_(0.5)
                pos.gate_mlp.fill_(0.5)
    neck = ScaleNetSimpleFPN(backbone_channel=32, out_channels=16, num_outs=5)
    outs = neck(model(torch.randn(2, 3, 96, 128)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]
    sum(o.square().mean() for o in outs).backward()
    for j in range(2):
        for name in ('attn.qkv.weight', 'attn.proj.weight', 'mlp.fc1.weight', 'mlp.fc2.weight', 'norm1.weight'):
            grad = model.get_parameter(f'blocks.{j}.{name}').grad
            assert grad is not None and grad.abs().sum() > 0, f'blocks.{j}.{name}'
    for p, pos in enumerate(model.positions):
        # the up-projection starts at zero, so it is the adapter weight with a gradient at step 0
        for name in ('adapter_attn.up.weight', 'adapter_mlp.up.weight', 'rel_pos_h', 'rel_pos_w'):
            grad = pos.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, f'positions.{p}.{name}'
        if pos.gate_attn is not None:
            assert pos.gate_attn.grad is not None and pos.gate_attn.grad.abs() > 0
    assert all(p.grad is not None for p in neck.parameters())


# ---- necks --------------------------------------------------------------------------------------------------------
def test_ln2d_matches_layer_norm_over_channels(mmdet_scope):
    from mmdet.registry import MODELS
    from mmscalenet.models.simple_fpn import LN2d
    norm = MODELS.build(dict(type='ScaleNetLN2d', num_channels=8))
    assert isinstance(norm, LN2d)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 5, 7)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6)
    torch.testing.assert_close(norm(x), ref.permute(0, 3, 1, 2))
    # a norm by type for layer-wise lr decay; inside mmcv's ConvModule under the key the detectors were trained with
    from mmcv.cnn import ConvModule
    assert isinstance(norm, torch.nn.LayerNorm)
    conv = ConvModule(4, 8, 1, norm_cfg=dict(type='ScaleNetLN2d'))
    assert sorted(conv.state_dict()) == ['conv.weight', 'norm_layer.bias', 'norm_layer.weight']


def test_simple_fpn_maps_are_contiguous_for_mmcv_roi_align(mmdet_scope):
    """mmcv's RoIAlign reads its feature maps as contiguous NCHW: on a permuted (channels-last) map it silently
    samples the wrong values. timm's LayerNorm2d returns such a view, so the neck must hand contiguous maps on."""
    from mmcv.ops import roi_align

    from mmscalenet.models.simple_fpn import ScaleNetSimpleFPN
    neck = ScaleNetSimpleFPN(backbone_channel=16, out_channels=8, num_outs=3, scale_factors=(1, 0.5, 0.25))
    outs = neck((torch.randn(1, 16, 16, 16),))
    assert all(o.is_contiguous() for o in outs)
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]])
    torch.testing.assert_close(roi_align(outs[0], rois, (4, 4), 1.0, 2, 'avg', True),
                               roi_align(outs[0].contiguous(), rois, (4, 4), 1.0, 2, 'avg', True))
    # and the failure this guards against is real: the same map as a channels-last view gives other values
    view = outs[0].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not torch.allclose(roi_align(view, rois, (4, 4), 1.0, 2, 'avg', True),
                              roi_align(outs[0], rois, (4, 4), 1.0, 2, 'avg', True))


def test_simple_fpn_levels_channels_and_errors(mmdet_scope):
    from mmscalenet.models.simple_fpn import ScaleNetSimpleFPN
    neck = ScaleNetSimpleFPN(backbone_channel=64, out_channels=32, num_outs=5)   # ViTDet: strides 4..64 from 16
    assert neck.in_channels == [16, 32, 64, 64]
    x = torch.randn(1, 64, 8, 12)
    outs = neck((x,))                           # the backbone's tuple
    assert [tuple(o.shape) for o in outs] == [(1, 32, 32, 48), (1, 32, 16, 24), (1, 32, 8, 12), (1, 32, 4, 6),
                                              (1, 32, 2, 3)]
    for a, b in zip(outs, neck(x)):             # a bare tensor works the same
        torch.testing.assert_close(a, b)
    demo = ScaleNetSimpleFPN(backbone_channel=64, out_channels=32, num_outs=3, scale_factors=(1, 0.5, 0.25))
    assert [tuple(o.shape[-2:]) for o in demo(torch.randn(1, 64, 24, 24))] == [(24, 24), (12, 12), (6, 6)]
    with pytest.raises(ValueError, match='in_channels'):
        ScaleNetSimpleFPN(backbone_channel=64, in_channels=[64, 64, 64, 64], out_channels=32)
    with pytest.raises(ValueError, match='powers of two'):
        ScaleNetSimpleFPN(backbone_channel=64, scale_factors=(3, 1))
    with pytest.raises(ValueError, match='backbone_channel=64'):
        neck(torch.randn(1, 32, 8, 8))


def test_multi_level_neck_with_fpn(mmdet_scope):
    from mmscalenet.models.simple_fpn import ScaleNetMultiLevelNeck
    neck = ScaleNetMultiLevelNeck(in_channels=64, fpn=dict(type='FPN', out_channels=32, num_outs=5))
    assert neck.level_channels == [16, 32, 64, 64]
    maps = tuple(torch.randn(1, 64, 8, 10) for _ in range(4))
    outs = neck(maps)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 32, 40), (1, 32, 16, 20), (1, 32, 8, 10), (1, 32, 4, 5),
                                              (1, 32, 2, 3)]
    with pytest.raises(ValueError, match='out_indices'):
        neck(maps[:2])


# ---- layer decay --------------------------------------------------------------------------------------------------
class _Detector(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        from mmscalenet.models.simple_fpn import LN2d
        self.backbone = backbone
        self.neck = torch.nn.Sequential(torch.nn.Conv2d(32, 8, 1), LN2d(8))


def _build_optim(model, **paramwise):
    from mmengine.optim import build_optim_wrapper
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='ScaleNetLayerDecayOptimizerConstructor', paramwise_cfg=paramwise,
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1)))


def _groups_by_name(model, optim):
    seen = {}
    for group in optim.param_groups:
        for name, p in zip(group['param_names'], group['params']):
            assert id(p) not in seen, f'{name} is in two groups'
            seen[id(p)] = (name, group['lr'], group['weight_decay'])
    assert set(seen) == {id(p) for p in model.parameters()}      # every parameter, exactly once
    assert len(seen) == len(list(model.parameters()))
    return {name: (lr, wd) for name, lr, wd in seen.values()}


@pytest.mark.parametrize('mapping', ['cyclic', 'interleave'])
@pytest.mark.parametrize('rule', ['base', 'deepest', 'first'])
def test_layer_decay_groups_per_sharing_rule(mmdet_scope, mapping, rule):
    backbone = dense_vit(depth=4, mapping=mapping, window_size=4, function_preserving=True)
    model = _Detector(backbone)
    by_name = _groups_by_name(model, _build_optim(model, decay_rate=0.5, sharing_rule=rule).optimizer)
    D, L, rate = 4, 2, 0.5
    plan = backbone.plan
    assert plan.original_positions == ((0, 1) if mapping == 'cyclic' else (0, 2))
    N = L if rule == 'base' else D          # the depth the decay runs over

    def lr_of(layer_id):
        return rate ** (N + 1 - layer_id)

    for j in range(L):          # shared tensors, once each
        uses = [p for p, src in enumerate(plan.sources) if src == j]
        layer_id = {'base': j + 1, 'deepest': max(uses) + 1, 'first': min(uses) + 1}[rule]
        assert by_name[f'backbone.blocks.{j}.attn.qkv.weight'] == (pytest.approx(lr_of(layer_id)), 0.1)
        assert by_name[f'backbone.blocks.{j}.mlp.fc2.bias'] == (pytest.approx(lr_of(layer_id)), 0.1)
        assert by_name[f'backbone.blocks.{j}.norm1.weight'] == (pytest.approx(lr_of(layer_id)), 0.0)
    for p in range(D):          # per-position tensors: their own position (on the base scale under 'base')
        layer_id = (p + 1) * L / D if rule == 'base' else p + 1
        assert by_name[f'backbone.positions.{p}.adapter_attn.down.weight'] == (pytest.approx(lr_of(layer_id)), 0.1)
        assert by_name[f'backbone.positions.{p}.rel_pos_h'] == (pytest.approx(lr_of(layer_id)), 0.0)
        if plan.inserted[p]:
            assert by_name[f'backbone.positions.{p}.gate_attn'] == (pytest.approx(lr_of(layer_id)), 0.0)
    assert by_name['backbone.patch_embed.proj.weight'] == (pytest.approx(lr_of(0)), 0.1)
    assert by_name['backbone.pos_embed'] == (pytest.approx(lr_of(0)), 0.0)
    assert by_name['neck.0.weight'] == (pytest.approx(1.0), 0.1)
    assert by_name['neck.1.weight'] == (pytest.approx(1.0), 0.0)   # LN2d: a norm, no decay


def test_layer_decay_rules_agree_on_a_plain_vit(mmdet_scope):
    model = _Detector(dense_vit(depth=None, adapter=None, window_size=4))
    tables = [_groups_by_name(model, _build_optim(model, decay_rate=0.7, sharing_rule=rule).optimizer)
              for rule in ('base', 'deepest', 'first')]
    assert tables[0] == tables[1] == tables[2]
    assert tables[0]['backbone.blocks.1.attn.qkv.weight'][0] == pytest.approx(0.7)


def _shipped_lrs(path, **paramwise):
    """lr of every backbone tensor under a shipped COCO config's optimizer (backbone built on the meta device)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    lrs, model = config_lrs(Config.fromfile(path), lambda c: _Detector(MODELS.build(c.model.backbone)), **paramwise)
    return lrs, model.backbone


@pytest.mark.parametrize('grown, plain', [
    ('vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py', 'vitdet_mask-rcnn_deit-s_lsj-100e_coco.py'),
    ('vitdet_mask-rcnn_scalenet-deit-b-24_lsj-100e_coco.py', 'vitdet_mask-rcnn_deit-b_lsj-100e_coco.py')])
def test_shipped_grown_config_trains_shared_tensors_as_the_plain_recipe(mmdet_scope, grown, plain):
    """Every shared tensor of the grown ViTDet config gets at least half the lr the plain 12-layer config gives it."""
    grown_lr, backbone = _shipped_lrs(osp.join(ROOT, 'configs', 'coco', grown))
    plain_lr, _ = _shipped_lrs(osp.join(ROOT, 'configs', 'coco', plain))
    assert backbone.plan.depth == 24 and backbone.plan.base_depth == 12
    shared = [name for name in grown_lr if name.startswith('backbone.blocks.')]
    assert len(shared) == len([n for n in plain_lr if n.startswith('backbone.blocks.')]) > 12 * 8
    for name in shared:
        assert grown_lr[name] >= 0.5 * plain_lr[name], f'{name}: {grown_lr[name]:.3g} vs {plain_lr[name]:.3g}'
    # and the adapters of the deepest positions train like the deepest block
    assert grown_lr['backbone.positions.23.adapter_mlp.up.weight'] == pytest.approx(
        plain_lr['backbone.blocks.11.mlp.fc1.weight'])


def test_first_position_rule_would_freeze_the_shared_tensors(mmdet_scope):
    """The first release's rule, measured on the shipped grown config: 1/72 of the plain lr for every shared block."""
    first, _ = _shipped_lrs(osp.join(ROOT, 'configs', 'coco', 'vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'),
                            sharing_rule='first')
    plain_lr, _ = _shipped_lrs(osp.join(ROOT, 'configs', 'coco', 'vitdet_mask-rcnn_deit-s_lsj-100e_coco.py'))
    ratio = first['backbone.blocks.5.attn.qkv.weight'] / plain_lr['backbone.blocks.5.attn.qkv.weight']
    assert ratio == pytest.approx(0.7 ** 12)   # 1/72


def test_shared_lr_scales_only_the_tensors_several_positions_run(mmdet_scope):
    """paramwise_cfg.shared_lr='per_use': a shared block run by k positions gets 1/k of its decayed lr; a number
    multiplies it; the per-position tensors, embeddings and neck keep theirs; bad values are refused."""
    backbone = dense_vit(depth=4, window_size=4)   # 2 base layers, each run by 2 positions
    model = _Detector(backbone)
    plain = _groups_by_name(model, _build_optim(model, decay_rate=0.5).optimizer)
    for setting, mult in (('per_use', 0.5), (0.25, 0.25)):
        scaled = _groups_by_name(model, _build_optim(model, decay_rate=0.5, shared_lr=setting).optimizer)
        for name, (lr, wd) in plain.items():
            expect = lr * mult if name.startswith('backbone.blocks.') else lr
            assert scaled[name] == (pytest.approx(expect), wd), name
    foil = _Detector(dense_vit(depth=4, window_size=4, growth='copy'))   # nothing shared: nothing scaled
    assert _groups_by_name(foil, _build_optim(foil, decay_rate=0.5, shared_lr='per_use').optimizer) == \
        _groups_by_name(foil, _build_optim(foil, decay_rate=0.5).optimizer)
    with pytest.raises(ValueError, match='shared_lr must be'):
        _build_optim(model, decay_rate=0.5, shared_lr='half')


def test_layer_decay_checks_its_config(mmdet_scope):
    model = _Detector(dense_vit(depth=4, window_size=4))
    with pytest.raises(ValueError, match='num_layers=12 but the backbone has depth 4'):
        _build_optim(model, decay_rate=0.7, num_layers=12)
    with pytest.raises(ValueError, match='decay_rate'):
        _build_optim(model, num_layers=4)
    with pytest.raises(ValueError, match='unknown paramwise_cfg keys'):
        _build_optim(model, decay_rate=0.7, bias_decay_mult=0.0)
    with pytest.raises(ValueError, match='sharing_rule must be one of'):
        _build_optim(model, decay_rate=0.7, sharing_rule='last')
    assert len(_build_optim(model, decay_rate=0.7, num_layers=4).optimizer.param_groups) > 0


# ---- the COCO configs, shrunk -------------------------------------------------------------------------------------
def _shrink(cfg, ch=32):
    """Tiny backbone and heads for a CPU step; everything else as configured."""
    bb = cfg.model.backbone
    grown = bb.depth > 12
    bb.arch = dict(embed_dims=64, num_layers=2, num_heads=2, mlp_ratio=2.0)
    bb.depth = 4 if grown else 2
    bb.init_cfg = None
    bb.window_size = 4
    bb.global_indices = None
    if bb.get('out_indices') and len(bb.out_indices) > 1:
        bb.out_indices = (0, 1, 2, 3) if grown else (0, 1, 1, 1)
    neck = cfg.model.neck
    if neck.type == 'ScaleNetSimpleFPN':
        neck.backbone_channel, neck.out_channels = 64, ch
    else:
        neck.in_channels, neck.fpn.out_channels = 64, ch
    cfg.model.data_preprocessor.batch_augments = [dict(type='BatchFixedSizePad', size=(128, 128), pad_mask=True)]
    cfg.model.data_preprocessor.pad_size_divisor = 32
    rpn, roi = cfg.model.rpn_head, cfg.model.roi_head
    rpn.in_channels = rpn.feat_channels = ch
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        roi[key].out_channels = ch
    roi.bbox_head.in_channels = roi.mask_head.in_channels = roi.mask_head.conv_out_channels = ch
    roi.bbox_head.fc_out_channels = 64
    if 'conv_out_channels' in roi.bbox_head:
        roi.bbox_head.conv_out_channels = ch
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.optim_wrapper.type = 'OptimWrapper'    # AmpOptimWrapper refuses CPU
    cfg.optim_wrapper.paramwise_cfg.num_layers = bb.depth
    return cfg


def test_coco_configs_are_the_recipes():
    from mmengine.config import Config
    names = {osp.basename(p) for p in COCO_CONFIGS}
    assert {'vitdet_mask-rcnn_deit-s_lsj-100e_coco.py', 'vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py',
            'vitdet_mask-rcnn_deit-b_lsj-100e_coco.py', 'vitdet_mask-rcnn_scalenet-deit-b-24_lsj-100e_coco.py',
            'mask-rcnn_scalenet-deit-s-24_fpn_1x_coco.py', 'mask-rcnn_scalenet-deit-s-24_fpn_ms-3x_coco.py'} <= names
    for path in COCO_CONFIGS:
        cfg = Config.fromfile(path)
        bb, ow = cfg.model.backbone, cfg.optim_wrapper
        assert cfg.default_scope == 'mmdet' and cfg.custom_imports.imports == ['mmscalenet']
        assert bb.type == 'ScaleNetViT' and bb.out_type == 'featmap' and bb.init_cfg.type == 'Pretrained'
        assert ow.type == 'AmpOptimWrapper' and ow.constructor == 'ScaleNetLayerDecayOptimizerConstructor'
        assert ow.optimizer.type == 'AdamW' and ow.optimizer.lr == 1e-4 and ow.optimizer.weight_decay == 0.1
        assert ow.paramwise_cfg == dict(decay_rate=0.7)          # depth read from the model, rule 'base'
        foil = 'progressive' in osp.basename(path)   # the foil: ScaleNet's config with only the growth changed
        assert (bb.depth == 24) == ('scalenet' in osp.basename(path) or foil)
        assert (bb.adapter is None) == (bb.depth == 12 or foil) and bb.get('growth', 'shared') == (
            'copy' if foil else 'shared')
        if osp.basename(path).startswith('vitdet'):
            assert cfg.train_cfg.max_iters == 184375 and cfg.train_dataloader.batch_size == 4
            assert cfg.model.neck.type == 'ScaleNetSimpleFPN'
            assert not any(t['type'] == 'Pad' for t in cfg.test_dataloader.dataset.pipeline)
            assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline][2:5] == [
                'RandomFlip', 'RandomResize', 'RandomCrop']
        else:
            assert cfg.model.neck.type == 'ScaleNetMultiLevelNeck' and len(bb.out_indices) == 4


@pytest.mark.parametrize('path', COCO_CONFIGS, ids=[osp.basename(p)[:-3] for p in COCO_CONFIGS])
def test_coco_config_detector_loss_and_predict(mmdet_scope, path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = _shrink(Config.fromfile(path))
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    optim = build_optim_wrapper(detector, cfg.optim_wrapper)
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 125, 130]], num_items=[2, 3], num_classes=80, with_mask=True)
    detector.train()
    losses = detector(**detector.data_preprocessor(packed, True), mode='loss')
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    loss, _ = detector.parse_losses(losses)
    assert torch.isfinite(loss)
    optim.update_params(loss)
    detector.eval()
    with torch.no_grad():
        results = detector(**detector.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    for res, (h, w) in zip(results, [(128, 128), (125, 130)]):
        pred = res.pred_instances
        assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels) == len(pred.bboxes)
        assert tuple(pred.masks.shape[1:]) == (h, w)


# ---- digit scenes -------------------------------------------------------------------------------------------------
def test_digit_scenes_are_deterministic_coco(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    a = digit_scenes.generate(str(tmp_path / 'a'), num_train=6, num_val=3, seed=3)
    b = digit_scenes.generate(str(tmp_path / 'b'), num_train=6, num_val=3, seed=3)
    c = digit_scenes.generate(str(tmp_path / 'c'), num_train=6, num_val=3, seed=4)
    ja, jb, jc = (json.load(open(p['train_ann'])) for p in (a, b, c))
    assert ja['annotations'] == jb['annotations'] and ja['annotations'] != jc['annotations']
    assert open(osp.join(a['train_img'], '000000.png'), 'rb').read() == \
        open(osp.join(b['train_img'], '000000.png'), 'rb').read()
    assert [c['name'] for c in ja['categories']] == [str(d) for d in range(10)]
    coco = COCO(a['train_ann'])
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) >= 6
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = coco.annToMask(ann)
        assert m.sum() == ann['area'] > 0
        ys, xs = np.nonzero(m)
        assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        np.testing.assert_array_equal(mask_utils.toBbox(coco.annToRLE(ann)), ann['bbox'])
        np.testing.assert_array_equal(digit_scenes.rle_decode(ann['segmentation']), m)
    # reused when the settings match, rewritten when they differ
    stamp = os.path.getmtime(a['train_ann'])
    digit_scenes.generate(str(tmp_path / 'a'), num_train=6, num_val=3, seed=3)
    assert os.path.getmtime(a['train_ann']) == stamp


def test_cluttered_scenes_are_harder_and_their_masks_stay_exact():
    """The default ('cluttered') scenes: several digits of a wider scale range that may overlap, unannotated
    shapes; each pixel belongs to at most one mask (the visible ink), boxes are the masks' tight boxes."""
    images, labels = digit_scenes._digits()
    pool = digit_scenes.split_pools(labels)['train']
    rng = np.random.default_rng([7, 0])
    sizes, counts, overlaps = [], [], 0
    for _ in range(40):
        img, inst = digit_scenes.make_cluttered_scene(rng, images, labels, pool)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        counts.append(len(inst))
        masks = np.stack([i['mask'] for i in inst]).astype(int)
        assert masks.sum(0).max() <= 1                  # no pixel in two masks
        for i in inst:
            assert i['mask'].sum() >= 12
            ys, xs = np.nonzero(i['mask'])
            assert i['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            sizes.append(max(i['bbox'][2:]))
        boxes = [i['bbox'] for i in inst]
        overlaps += sum(1 for a in range(len(boxes)) for b in range(a) if
                        min(boxes[a][0] + boxes[a][2], boxes[b][0] + boxes[b][2]) > max(boxes[a][0], boxes[b][0]) and
                        min(boxes[a][1] + boxes[a][3], boxes[b][1] + boxes[b][3]) > max(boxes[a][1], boxes[b][1]))
    assert max(counts) >= 4 and min(counts) >= 1
    assert min(sizes) < 18 and max(sizes) > 38          # a wider scale range than the plain style's 20-40 px
    assert overlaps > 0                                  # digits do overlap


def test_digit_scene_styles_differ_and_plain_keeps_the_previous_layout(tmp_path):
    plain = digit_scenes.generate(str(tmp_path / 'p'), num_train=4, num_val=2, seed=3, style='plain')
    clut = digit_scenes.generate(str(tmp_path / 'c'), num_train=4, num_val=2, seed=3)
    settings = json.load(open(osp.join(clut['root'], 'scenes.json')))
    assert settings['style'] == 'cluttered' and settings['max_digits'] == 5 and settings['size_range'] == [14, 44]
    assert json.load(open(osp.join(plain['root'], 'scenes.json')))['size_range'] == [20, 40]
    assert open(osp.join(plain['train_img'], '000000.png'), 'rb').read() != \
        open(osp.join(clut['train_img'], '000000.png'), 'rb').read()
    with pytest.raises(ValueError, match='style'):
        digit_scenes.generate(str(tmp_path / 'x'), num_train=1, num_val=1, style='hard')


def test_digit_scenes_val_digits_are_the_classification_val_split():
    from mmscalenet.datasets.digits import split_indices
    _, labels = digit_scenes._digits()
    pools = digit_scenes.split_pools(labels)
    train, val = split_indices(labels, 0.2, 0)
    np.testing.assert_array_equal(pools['train'], train)
    np.testing.assert_array_equal(pools['val'], val)


@pytest.mark.parametrize('max_iters, expect', [
    (None, [(0, 50), (50, 200)]),      # the config's own schedule
    (20, [(0, 20), (19, 20)]),         # a quick check: every phase cut
    (400, [(0, 50), (50, 400)]),       # a longer run: warm-up kept, cosine stretched
])
def test_detection_demo_max_iters_scales_the_schedule(tmp_path, max_iters, expect):
    from mmscalenet.checkpoint import save_scalenet
    from mmscalenet.demo import detection
    from mmscalenet.models import ScaleNetViT
    ckpt = str(tmp_path / 'bb.pth')
    save_scalenet(ScaleNetViT(dict(embed_dims=32, num_layers=2, num_heads=2), img_size=32, patch_size=4), ckpt)
    scenes = dict(root=str(tmp_path / 'scenes'), val_ann=str(tmp_path / 'scenes' / 'val.json'))
    cfg = detection.build_config('base', ckpt, scenes, str(tmp_path), seed=0, max_iters=max_iters)
    assert cfg.train_cfg.max_iters == (max_iters or 200)
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == expect


def test_detection_demo_needs_the_classification_backbones(tmp_path):
    from mmscalenet.demo import detection
    with pytest.raises(FileNotFoundError, match='run the classification half first'):
        detection.run(str(tmp_path))


# ---- tools on a tiny scene set ------------------------------------------------------------------------------------
def _run(args, cwd=ROOT, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, MMSCALENET_THREADS='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """tools/train.py for two iterations of the demo detector on a tiny scene set (random backbone)."""
    from mmscalenet.checkpoint import save_scalenet
    from mmengine.config import Config
    tmp = tmp_path_factory.mktemp('det_tools')
    scenes = digit_scenes.generate(str(tmp / 'scenes'), num_train=8, num_val=4, seed=1)
    backbone = str(tmp / 'scalenet_backbone.pth')
    # what the classification half writes: the grown backbone of digits_cls_scalenet.py
    cls_cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', 'digits_cls_scalenet.py'))
    kwargs = dict(cls_cfg.model.backbone)
    kwargs.pop('type')
    save_scalenet(ScaleNetViT(**kwargs), backbone)
    config = tmp / 'tiny_det.py'
    data_root = scenes['root'] + '/'
    base = osp.join(ROOT, 'configs', 'demo', 'digits_det_scalenet.py')
    config.write_text('\n'.join([
        f'_base_ = {base!r}',
        f'data_root = {data_root!r}',
        f'model = dict(backbone=dict(init_cfg=dict(checkpoint={backbone!r})))',
        'train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))',
        'val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))',
        'test_dataloader = val_dataloader',
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')",
        'test_evaluator = val_evaluator',
        'train_cfg = dict(max_iters=2, val_interval=2)',
        'default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))', '']))
    work = tmp / 'work'
    proc = _run(['tools/train.py', str(config), '--work-dir', str(work)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(config=str(config), work=work, scenes=scenes, log=proc.stdout + proc.stderr)


def test_train_two_iterations_then_validate(trained):
    ckpt = trained['work'] / 'iter_2.pth'
    assert ckpt.is_file()
    log = trained['log']
    assert 'Iter(train) [2/2]' in log and "ScaleNet layer decay: over 4 layers (sharing_rule='base')" in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log


def test_tools_test_reports_coco_metrics(trained):
    out = trained['work'] / 'preds.pkl'
    proc = _run(['tools/test.py', trained['config'], str(trained['work'] / 'iter_2.pth'),
                 '--work-dir', str(trained['work'] / 'test'), '--out', str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert f"'{key}'" in proc.stdout
    assert out.is_file()


def test_tools_infer_draws_predictions(trained, tmp_path):
    image = osp.join(trained['scenes']['val_img'], '000000.png')
    out = tmp_path / 'pred.png'
    proc = _run(['tools/infer.py', trained['config'], str(trained['work'] / 'iter_2.pth'), image, '--out', str(out),
                 '--score-thr', '0.0'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'detection(s) with score >= 0.0' in proc.stdout
    from PIL import Image
    assert Image.open(out).size == (96, 96)


def test_tools_infer_help_and_errors(tmp_path):
    proc = _run(['tools/infer.py', '--help'])
    assert proc.returncode == 0 and '--score-thr' in proc.stdout
    proc = _run(['tools/infer.py', osp.join(ROOT, 'configs', 'demo', 'digits_det_base.py'), str(tmp_path / 'no.pth'),
                 'img.png', '--out', str(tmp_path / 'o.png')])
    assert proc.returncode == 1 and 'checkpoint file not found' in proc.stderr
