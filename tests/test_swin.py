"""ScaleNetSwin: timm parity at base depth, grown == untied copy (forward, gradients), shared-gradient sums, the
Swin configs (configs/{imagenet,coco}/*swin*) and a Mask R-CNN training step (CPU, tiny Swins). Checkpoints:
test_swin_checkpoint.py."""
import glob
import os.path as osp
import re

import pytest
import torch

from conftest import ROOT
from mmscalenet.expansion import count_parameters
from mmscalenet.checkpoint import timm_kwargs, untied_state_dict
from mmscalenet.models.swin import ScaleNetSwin, relative_position_index, shifted_window_mask

timm_swin = pytest.importorskip('timm.models.swin_transformer')

TINY = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4)
IMG = 64
SWIN_CONFIGS = sorted(p for task in ('imagenet', 'coco')   # the configs are arranged by task for both families
                      for p in glob.glob(osp.join(ROOT, 'configs', task, '*swin*.py')))


def tiny_timm_swin(img=IMG, depths=TINY['depths'], seed=0, num_classes=0):
    """timm SwinTransformer in swin_tiny_patch4_window7_224's layout, tiny, with non-trivial (seeded) weights."""
    torch.manual_seed(seed)
    model = timm_swin.SwinTransformer(img_size=img, patch_size=4, embed_dim=TINY['embed_dims'], depths=depths,
                                      num_heads=TINY['num_heads'], window_size=TINY['window_size'],
                                      num_classes=num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def scalenet(depths=None, img=IMG, **kw):
    args = dict(adapter=None, img_size=img, out_type='pooled')
    args.update(kw)
    return ScaleNetSwin(TINY, depths=depths, **args)


def timm_pooled(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


# ---- parity with timm ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('img', [64, 96])   # 96: stage maps 24/12/6/3, padded windows and a clipped last stage
@pytest.mark.parametrize('unshared', [('rel_pos',), (), ('norm', 'rel_pos')])
def test_base_depth_reproduces_timm(img, unshared):
    ref = tiny_timm_swin(img)
    model = scalenet(img=img, unshared=unshared).eval()
    report = model.load_pretrained(ref.state_dict())
    assert report['layout'] == 'timm' and not report['new'] and not report['ignored']
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        diff = (model(x)[0] - timm_pooled(ref, x)).abs().max().item()
    assert diff < 1e-5


def test_featmap_outputs_match_timm_stages_and_any_size():
    ref = tiny_timm_swin()
    model = ScaleNetSwin(TINY, adapter=None, img_size=IMG, out_indices=(0, 1, 2, 3)).eval()
    model.load_pretrained(ref.state_dict())
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        outs = model(x)
        feats = ref.forward_features(x).permute(0, 3, 1, 2)
        # timm's final norm became norm3: the last map equals forward_features
        assert (outs[3] - feats).abs().max() < 1e-5
        assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4), (1, 256, 2, 2)]
        odd = model(torch.randn(1, 3, 77, 130))    # padded to patches, odd maps padded by patch merging
    assert [tuple(o.shape[2:]) for o in odd] == [(20, 33), (10, 17), (5, 9), (3, 5)]
    assert all(torch.isfinite(o).all() for o in odd)


def test_window_index_and_mask_are_timms():
    assert torch.equal(relative_position_index((4, 4), (4, 4)), timm_swin.get_relative_position_index(4, 4))
    # a window clipped to a smaller map reads the central rows of the larger table: offsets keep their meaning
    small, big = relative_position_index((2, 2), (4, 4)), timm_swin.get_relative_position_index(4, 4)
    assert torch.equal(small, big[[0, 1, 4, 5]][:, [0, 1, 4, 5]])
    for hw in ((8, 8), (12, 8)):
        block = timm_swin.SwinTransformerBlock(8, hw, num_heads=1, window_size=4, shift_size=2)
        assert torch.equal(shifted_window_mask(hw, (4, 4), (2, 2)), block.attn_mask)


def test_shift_mask_separates_wrapped_regions():
    mask = shifted_window_mask((8, 8), (4, 4), (2, 2))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()                      # the top-left window holds one region only
    assert (mask[3] != 0).any() and (mask[3] == mask[3].t()).all()
    assert set(mask.unique().tolist()) == {0.0, -100.0}


# ---- grown model == untied copy -------------------------------------------------------------------------------------
def _randomise(model, seed=1):
    """Non-zero adapters / LoRA / gates, so that every per-position tensor shows up in outputs and gradients."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.positions.' in name and not name.endswith('relative_position_bias_table'):
                p.add_(torch.randn_like(p) * 0.1)


GROWN = (2, 3, 5, 3)


def untied_copy(model):
    """A ``ScaleNetSwin`` with base depths = ``model``'s grown depths and the identity mapping, every position owning
    a copy of its shared block and its own per-position tensors (adapters included): the same function, nothing
    shared. The gates of ``model``'s inserted positions are kept as such (the copy has none of its own)."""
    arch = dict(model.arch, depths=tuple(p.depth for p in model.plans))
    copy = ScaleNetSwin(arch, adapter=model.adapter_cfg, function_preserving=False, unshared=model.unshared,
                        img_size=model.img_size, drop_path_rate=model.drop_path_rate, out_type=model.out_type,
                        out_indices=model.out_indices)
    state = {}
    for key, value in model.state_dict().items():
        m = re.match(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
        if m:
            s, j = int(m.group(1)), int(m.group(2))
            for p in model.plans[s].positions_of(j):
                state[f'layers.{s}.blocks.{p}.{m.group(3)}'] = value.detach().clone()
        elif not key.endswith(('gate_attn', 'gate_mlp')):
            state[key] = value.detach().clone()
    copy.load_state_dict(state, strict=True)
    for s, stage in enumerate(model.layers):
        for p, pos in enumerate(stage.positions):
            if pos.gate_attn is not None:
                target = copy.layers[s].positions[p]
                target.gate_attn = torch.nn.Parameter(pos.gate_attn.detach().clone())
                target.gate_mlp = torch.nn.Parameter(pos.gate_mlp.detach().clone())
    return copy


@pytest.mark.parametrize('adapter', [dict(type='ParallelAdapter', bottleneck=4), dict(type='LoRA', rank=2)])
@pytest.mark.parametrize('fused', [True, False])
def test_grown_equals_untied_copy_forward_and_gradients(adapter, fused):
    torch.manual_seed(0)
    grown = scalenet(GROWN, adapter=adapter, function_preserving=True, unshared=('norm', 'rel_pos'))
    grown.load_pretrained(tiny_timm_swin().state_dict())
    _randomise(grown)
    grown.set_fused(fused)
    untied = untied_copy(grown).set_fused(fused)
    assert tuple(p.base_depth for p in untied.plans) == GROWN
    grown.train()
    untied.train()
    x = torch.randn(2, 3, IMG, IMG)
    a, b = grown(x)[0], untied(x)[0]
    assert (a - b).abs().max() < 1e-5
    a.square().sum().backward()
    b.square().sum().backward()
    g_untied = {n: p.grad for n, p in untied.named_parameters()}
    checked = 0
    for name, p in grown.named_parameters():
        m = re.match(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$', name)
        if m:   # shared: the sum of the gradients of every position running that block
            s, j = int(m.group(1)), int(m.group(2))
            positions = grown.plans[s].positions_of(j)
            expected = sum(g_untied[f'layers.{s}.blocks.{q}.{m.group(3)}'] for q in positions)
            if len(positions) > 1:
                checked += 1
        else:
            expected = g_untied[name]
        assert p.grad is not None, name
        assert (p.grad - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item()), name
    assert checked > 0


def test_shared_tensor_is_one_tensor_and_its_gradient_is_the_sum_over_positions():
    model = scalenet((2, 2, 6, 2), adapter=dict(type='ParallelAdapter', bottleneck=4)).train()
    stage = model.layers[2]
    assert stage.plan.sources == (0, 1, 0, 1, 0, 1)
    names = [n for n, _ in model.named_parameters()]
    assert sum(n.startswith('layers.2.blocks.') and n.endswith('attn.qkv.weight') for n in names) == 2
    grads = []
    x = torch.randn(1, 3, IMG, IMG)
    for keep in (0, 2, 4):   # each position running block 0 alone (the others' branch of block 0 cut off)
        model.zero_grad()
        weight = stage.blocks[0].attn.qkv.weight
        hook = []
        for p in (0, 2, 4):
            if p != keep:
                pos = stage.positions[p]
                hook.append(pos.register_forward_pre_hook(
                    lambda mod, args: (args[0], _detached(args[1]), args[2])))
        model(x)[0].sum().backward()
        grads.append(weight.grad.clone())
        for h in hook:
            h.remove()
    model.zero_grad()
    model(x)[0].sum().backward()
    assert (stage.blocks[0].attn.qkv.weight.grad - sum(grads)).abs().max() < 1e-4


def _detached(block):
    """A copy of ``block`` whose tensors do not require gradients (the position still computes the same)."""
    import copy
    clone = copy.deepcopy(block)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def test_function_preserving_growth_starts_as_the_pretrained_swin():
    ref = tiny_timm_swin()
    grown = scalenet((2, 4, 6, 2), adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True)
    grown.load_pretrained(ref.state_dict())
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert (grown.eval()(x)[0] - timm_pooled(ref, x)).abs().max() < 1e-5


def test_lora_export_is_a_plain_timm_swin_of_the_grown_depths():
    grown = scalenet(GROWN, adapter=dict(type='LoRA', rank=2), function_preserving=True)
    grown.load_pretrained(tiny_timm_swin().state_dict())
    _randomise(grown)
    plain = timm_swin.SwinTransformer(**timm_kwargs(grown)).eval()
    plain.load_state_dict(untied_state_dict(grown), strict=True)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        ref = timm_pooled(plain, x)
        # merged LoRA and folded gates round differently from the unmerged sums: fp32 relative tolerance
        assert (grown.eval()(x)[0] - ref).abs().max() < 1e-5 * ref.abs().max()
    from mmscalenet.checkpoint import NotMergeableError
    with pytest.raises(NotMergeableError, match='ParallelAdapter'):
        untied_state_dict(scalenet(GROWN, adapter=dict(type='ParallelAdapter')))


# ---- plans, parity, drop path, parameters -------------------------------------------------------------------------
def test_stage_plans_parity_and_drop_path():
    model = scalenet((2, 2, 18, 2), mapping='cyclic', drop_path_rate=0.3)
    assert model.plans[2].sources == tuple(p % 2 for p in range(18))
    assert model.parity_mismatches() == []
    rates = [pos.drop_path for stage in model.layers for pos in stage.positions]
    assert len(rates) == 24 and rates[0] == 0.0 and abs(rates[-1] - 0.3) < 1e-9
    assert all(b > a for a, b in zip(rates, rates[1:]))
    shifted = [pos.shifted for pos in model.layers[2].positions]
    assert shifted == [p % 2 == 1 for p in range(18)]
    inter = scalenet((2, 2, 6, 2), mapping='interleave')
    assert inter.plans[2].sources == (0, 0, 0, 1, 1, 1)
    assert (2, 1, 0) in inter.parity_mismatches()
    explicit = scalenet((2, 3, 2, 2), mapping=['cyclic', [0, 1, 1], 'cyclic', 'cyclic'])
    assert explicit.plans[1].sources == (0, 1, 1)


def test_bad_arguments_fail_with_one_line():
    with pytest.raises(ValueError, match='stage 2: depth D=1 is smaller'):
        scalenet((2, 2, 1, 2))
    with pytest.raises(ValueError, match='one depth per stage'):
        scalenet((2, 2, 6))
    with pytest.raises(ValueError, match='per-stage entries'):
        scalenet((2, 2, 6, 2), mapping=['cyclic', 'cyclic'])
    with pytest.raises(ValueError, match='unshared'):
        scalenet(unshared=('mlp',))
    with pytest.raises(ValueError, match='unknown Swin arch'):
        ScaleNetSwin('swin-huge')


def test_swin_t_grown_to_s_depth_parameters_and_rel_pos_choice():
    """The figures in the module docstring and docs: Swin-T grown to Swin-S depth against Swin-S."""
    per_pos = ScaleNetSwin('swin-tiny', depths=(2, 2, 18, 2))
    shared = ScaleNetSwin('swin-tiny', depths=(2, 2, 18, 2), unshared=())
    tables = lambda m: sum(p.numel() for n, p in m.named_parameters() if n.endswith('bias_table'))  # noqa: E731
    assert tables(shared) == 23322 and tables(per_pos) == 47658
    counts = count_parameters(per_pos)
    swin_s = sum(p.numel() for n, p in timm_swin.SwinTransformer(depths=(2, 2, 18, 2), num_classes=0)
                 .named_parameters())
    assert counts['unique'] / swin_s < 0.62
    # every shared tensor counted once per position running it: the untied total is Swin-S's backbone plus the
    # adapters and mmdet's output norms of stages 0-2 (norm3 stands for timm's final norm)
    adapters = sum(p.numel() for n, p in per_pos.named_parameters() if '.adapter_' in n)
    out_norms = sum(p.numel() for n, p in per_pos.named_parameters() if re.match(r'norm[012]\.', n))
    assert adapters == 307200 and out_norms == 1344
    assert counts['untied'] == swin_s + adapters + out_norms


# ---- layer decay ----------------------------------------------------------------------------------------------------
def test_layer_decay_gives_shared_swin_tensors_the_plain_swin_t_lr(mmdet_scope):
    """'base' rule on the ImageNet config's backbone (Swin-T grown to S depths) against the plain Swin-T: every shared
    tensor, the merging layers and the embedding get the plain model's lr (mmpretrain's Swin numbering)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmscalenet.engine.layer_decay import layer_id_fn
    path = osp.join(ROOT, 'configs', 'imagenet', 'scalenet_swin-t-s-depth_8xb128-100e_in1k.py')
    bb = Config.fromfile(path).model.backbone
    optim = dict(type='OptimWrapper', constructor='ScaleNetLayerDecayOptimizerConstructor',
                 paramwise_cfg=dict(decay_rate=0.9), optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))

    def groups(backbone_cfg):
        with torch.device('meta'):
            model = torch.nn.Module()
            model.backbone = MODELS.build(backbone_cfg)
        opt = build_optim_wrapper(model, optim).optimizer
        return {n: (g['lr'], g['weight_decay']) for g in opt.param_groups for n in g['param_names']}, model

    grown, model = groups(bb)
    plain, _ = groups(dict(bb, depths=None, adapter=None))
    assert tuple(p.depth for p in model.backbone.plans) == (2, 2, 18, 2)
    shared = [n for n in grown if '.blocks.' in n]
    assert len(shared) == len([n for n in plain if '.blocks.' in n]) > 12 * 10
    for name in shared + [n for n in grown if 'downsample' in n or 'patch_embed' in n]:
        assert grown[name] == plain[name], name

    def lr(layer_id):   # N = 12 base blocks; mmpretrain: rate ** (N + 1 - id)
        return pytest.approx(1e-3 * 0.9 ** (13 - layer_id))
    assert grown['backbone.layers.2.blocks.5.attn.qkv.weight'] == (lr(2 + 2 + 5 + 1), 0.05)
    assert grown['backbone.layers.2.downsample.reduction.weight'] == (lr(4), 0.05)   # after stage 1's last block
    assert grown['backbone.patch_embed.proj.weight'] == (lr(0), 0.05)
    assert grown['backbone.norm3.weight'] == (lr(13), 0.0)
    # per-position parameters on the base scale: the deepest position of stage 2 trains like its deepest block
    assert grown['backbone.layers.2.positions.17.adapter_mlp.up.weight'][0] == grown[
        'backbone.layers.2.blocks.5.mlp.fc1.weight'][0]
    assert grown['backbone.layers.2.positions.0.relative_position_bias_table'] == (lr(4 + 6 / 18), 0.0)
    # 'deepest' / 'first' run over the grown depth, counted over the stages
    layer_id, span = layer_id_fn(model.backbone, None, 'deepest')
    assert span == 24 and layer_id('layers.2.blocks.1.mlp.fc1.weight') == 4 + 13 + 1   # block 1 runs at 1, 7, 13
    assert layer_id_fn(model.backbone, 24, 'first')[0]('layers.3.positions.1.adapter_mlp.up.weight') == 22 + 2


# ---- configs and detection ---------------------------------------------------------------------------------------
def _tiny_backbone(bb):
    """Shrink a config's Swin backbone (ScaleNetSwin or mmdet's SwinTransformer) to a CPU-sized one in place."""
    bb.init_cfg = None
    if bb.type == 'ScaleNetSwin':
        bb.arch, bb.img_size = dict(TINY), IMG
        bb.depths = (2, 2, 4, 2) if bb.get('depths') else None
    else:
        bb.embed_dims, bb.depths, bb.num_heads, bb.window_size = 32, (2, 2, 2, 2), TINY['num_heads'], 4


def test_swin_configs_build(mmdet_scope):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    names = {osp.basename(p) for p in SWIN_CONFIGS}
    assert {'scalenet_swin-t-s-depth_8xb128-100e_in1k.py', 'swin-s_8xb128-300e_in1k.py',
            'mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py',
            'mask-rcnn_scalenet-swin-t-s-depth_fpn_ms-crop-3x_coco.py',
            'mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 'mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
            'mask-rcnn_swin-s-p4-w7_fpn_amp-ms-crop-3x_coco.py'} <= names
    for path in SWIN_CONFIGS:
        name = osp.basename(path)
        cfg = Config.fromfile(path)
        assert cfg.default_scope == 'mmdet' and 'mmscalenet' in cfg.custom_imports.imports
        bb = cfg.model.backbone
        if 'scalenet' in name:   # the grown model: Swin-T -> Swin-S depths
            assert bb.type == 'ScaleNetSwin' and bb.arch == 'swin-tiny' and tuple(bb.depths) == (2, 2, 18, 2)
            assert bb.adapter.type == 'ParallelAdapter'
        elif 'progressive' in name:   # the foil: the same growth by independent copies, no adapters
            assert bb.type == 'ScaleNetSwin' and bb.arch == 'swin-tiny' and tuple(bb.depths) == (2, 2, 18, 2)
            assert bb.adapter is None and bb.growth == 'copy'
        elif name.startswith('swin-s_'):   # ImageNet baseline: Swin-S from scratch
            assert bb.type == 'ScaleNetSwin' and bb.arch == 'swin-small' and bb.adapter is None
            assert cfg.model.init_cfg is None and cfg.train_cfg.max_epochs == 300
        else:   # mmdet's own baselines
            assert bb.type == 'SwinTransformer'
        if name.endswith('in1k.py'):   # Swin's recipe
            ow = cfg.optim_wrapper
            assert ow.optimizer.type == 'AdamW' and abs(ow.optimizer.lr - 1e-3) < 1e-12
            assert ow.optimizer.weight_decay == 0.05 and bb.drop_path_rate == 0.3
            assert cfg.train_cfg.max_epochs == (300 if name.startswith('swin-s_') else 100)
            assert cfg.train_dataloader.batch_size * 8 == 1024
        else:
            assert tuple(cfg.model.neck.in_channels) == (96, 192, 384, 768)
            assert cfg.train_cfg.max_epochs == (12 if '_1x_' in name else 36)
        _tiny_backbone(bb)
        if 'neck' in cfg.model:
            cfg.model.neck.in_channels = [32, 64, 128, 256]
        model = MODELS.build(cfg.model)
        if bb.type == 'ScaleNetSwin':
            assert isinstance(model.backbone, ScaleNetSwin)
            if name.endswith('in1k.py'):   # the classifier runs on the tiny backbone
                with torch.no_grad():
                    assert model(torch.randn(2, 3, IMG, IMG)).shape == (2, 1000)


def test_mask_rcnn_with_scalenet_swin_trains_one_step(mmdet_scope):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    path = osp.join(ROOT, 'configs', 'coco', 'mask-rcnn_scalenet-swin-t-s-depth_fpn_1x_coco.py')
    cfg = Config.fromfile(path)
    _tiny_backbone(cfg.model.backbone)
    ch = 32
    cfg.model.neck.in_channels, cfg.model.neck.out_channels = [32, 64, 128, 256], ch
    rpn, roi = cfg.model.rpn_head, cfg.model.roi_head
    rpn.in_channels = rpn.feat_channels = ch
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        roi[key].out_channels = ch
    roi.bbox_head.in_channels = roi.mask_head.in_channels = roi.mask_head.conv_out_channels = ch
    roi.bbox_head.fc_out_channels = 64
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.optim_wrapper.type = 'OptimWrapper'
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    optim = build_optim_wrapper(detector, cfg.optim_wrapper)
    packed = demo_mm_inputs(2, [[3, 96, 96], [3, 90, 100]], num_items=[2, 3], num_classes=80, with_mask=True)
    detector.train()
    shared = detector.backbone.layers[2].blocks[0].attn.qkv.weight
    before = shared.detach().clone()
    losses = detector(**detector.data_preprocessor(packed, True), mode='loss')
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    loss, _ = detector.parse_losses(losses)
    assert torch.isfinite(loss)
    optim.update_params(loss)
    assert not torch.equal(shared, before)
    detector.eval()
    with torch.no_grad():
        results = detector(**detector.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2 and results[0].pred_instances.bboxes.shape[1] == 4


# ---- tools/train.py and tools/test.py on tiny COCO-format scenes --------------------------------------------------
def test_tools_train_and_test_a_swin_mask_rcnn_on_tiny_coco(tmp_path):
    """Two training iterations with tools/train.py, then tools/test.py with COCO metrics (digit scenes, CPU)."""
    import os
    import subprocess
    import sys
    pytest.importorskip('mmdet')
    from mmscalenet.demo import digit_scenes
    scenes = digit_scenes.generate(str(tmp_path / 'scenes'), num_train=8, num_val=4, seed=1)
    root = scenes['root'] + '/'
    config = tmp_path / 'swin_det.py'
    base = osp.join(ROOT, 'configs', 'demo', 'digits_det_base.py')
    config.write_text('\n'.join([
        f'_base_ = {base!r}',
        f'data_root = {root!r}',
        'model = dict(',
        f'    backbone=dict(_delete_=True, type="ScaleNetSwin", arch={dict(TINY)!r}, depths=(2, 2, 4, 2),',
        '                  adapter=dict(type="ParallelAdapter", bottleneck=4), img_size=64, out_indices=(0, 1, 2)),',
        '    neck=dict(_delete_=True, type="FPN", in_channels=[32, 64, 128], out_channels=64, num_outs=3))',
        'optim_wrapper = dict(_delete_=True, type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4))',
        'train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))',
        'val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))',
        'test_dataloader = val_dataloader',
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')",
        'test_evaluator = val_evaluator',
        'train_cfg = dict(max_iters=2, val_interval=2)',
        'default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))', '']))
    env = dict(os.environ, PYTHONPATH=ROOT, MMSCALENET_THREADS='1', OMP_NUM_THREADS='1')

    def run(*args):
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    work = tmp_path / 'work'
    log = run('tools/train.py', str(config), '--work-dir', str(work))
    assert 'Iter(train) [2/2]' in log and 'coco/bbox_mAP' in log
    out = run('tools/test.py', str(config), str(work / 'iter_2.pth'), '--work-dir', str(work / 'test'))
    assert "'coco/bbox_mAP'" in out and "'coco/segm_mAP'" in out


def test_classifier_with_swin_reproduces_timm_logits(mmdet_scope):
    """ScaleNetClassifier on a pooled ScaleNetSwin loads timm's backbone and its head.fc: same logits at D = L."""
    from mmscalenet.models.classifier import ScaleNetClassifier
    ref = tiny_timm_swin(num_classes=10)
    clf = ScaleNetClassifier(dict(type='ScaleNetSwin', arch=dict(TINY), adapter=None, img_size=IMG,
                                  out_type='pooled'), num_classes=10, init_cfg=dict(type='Pretrained',
                                                                                    checkpoint=ref.state_dict()))
    clf.init_weights()
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert (clf.eval()(x) - ref(x)).abs().max() < 1e-5


# ---- tools/benchmark.py --backbone swin ---------------------------------------------------------------------------
def test_benchmark_swin_rows_and_fields():
    """In-process (imports once): Swin-T grown to Swin-S depths against timm's Swin-S, at 64 px, one step."""
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import benchmark
    doc = benchmark.main(['--device', 'cpu', '--backbone', 'swin', '--img-size', '64', '--batch-size', '1',
                          '--warmup', '0', '--steps', '1', '--repeats', '2', '--modes', 'train', '--no-base',
                          '--stat', 'best', '--json'])
    names = [r['model'] for r in doc['results']]
    assert names == ['scalenet swin-tiny (2, 2, 6, 2)->(2, 2, 18, 2) (parallel)', 'timm Swin depths (2, 2, 18, 2)']
    sn, same = doc['results']
    assert doc['settings']['depths'] == [2, 2, 18, 2] and doc['settings']['stat'] == 'best'
    assert sn['train_img_per_s'] == max(sn['train_repeats']) and sn['train_peak_mib'] > 0
    assert 0.5 < doc['ratios']['params_vs_timm_same_depth'] < 0.62
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--backbone', 'swin', '--depths', '2,x'])
