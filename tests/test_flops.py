"""FLOPs: the jit-traced count sees the adapters' and shared linears' products (fused == unfused), a grown model
without adapters counts what timm's ViT of the same depth counts, and tools/analysis/get_flops.py reports them."""
import copy
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_ARCH, timm_vit
from mmscalenet.analysis import count_complexity, plain_vit_like
from mmscalenet.models import ScaleNetViT

X = torch.zeros(1, 3, 32, 32)
TOKENS = 1 + (32 // 8) ** 2


def _grown(**kw):
    kw.setdefault('adapter', dict(type='ParallelAdapter', bottleneck=4))
    return ScaleNetViT(TINY_ARCH, depth=8, img_size=32, patch_size=8, **kw).eval()


def test_fused_adapters_counted_like_unfused():
    fused = _grown()
    unfused = copy.deepcopy(fused).set_fused(False)
    a, b = count_complexity(fused, X), count_complexity(unfused, X)
    assert abs(a['flops'] - b['flops']) <= 0.01 * b['flops']
    assert not any('LinearWithDown' in op or 'addmm_' in op for op in a['unsupported'])
    # exactly the adapters' products on top of the same model without adapters: 8 positions x 2 sites x tokens x
    # (down dim->4 + up 4->dim)
    bare = count_complexity(_grown(adapter=None), X)
    assert a['flops'] - bare['flops'] == 8 * 2 * TOKENS * (64 * 4 * 2)
    assert fused.positions[0].fused  # tracing switched nothing permanently


def test_grown_without_adapters_counts_like_timm_same_depth():
    grown = count_complexity(_grown(adapter=None), X)
    ref = timm_vit(depth=8, num_classes=0)
    timm_count = count_complexity(ref, X)
    assert abs(grown['flops'] - timm_count['flops']) <= 0.01 * timm_count['flops']
    # shared tensors count once: the grown model holds about half of the untied model's parameters
    assert grown['params'] < 0.6 * timm_count['params']
    assert abs(count_complexity(plain_vit_like(_grown()), X)['params'] - timm_count['params']) <= 64 * 2


def test_attention_products_counted():
    """DeiT's published FLOPs include q k^T and attn v: the count must too (mmengine skips SDPA by default)."""
    one = count_complexity(ScaleNetViT(TINY_ARCH, depth=4, adapter=None, img_size=32, patch_size=8), X)
    assert 'aten::scaled_dot_product_attention' not in one['unsupported']
    linear = 4 * TOKENS * (64 * 192 + 64 * 64 + 2 * 64 * 128) + 16 * 64 * 3 * 64   # blocks + patch embedding
    attention = 4 * 4 * TOKENS * TOKENS * (16 + 16)                                   # 4 layers x 4 heads
    norms = 9 * TOKENS * 64 * 5       # the rest: mmengine's 5 per element of the 9 layer norms
    assert one['flops'] == linear + attention + norms


def _get_flops_main():
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmscalenet_tool_get_flops', f'{ROOT}/tools/analysis/get_flops.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_get_flops_tool_on_a_tiny_config(tmp_path, capsys):
    out = tmp_path / 'flops.json'
    cfg = osp.join(ROOT, 'configs/demo/digits_cls_scalenet.py')
    assert _get_flops_main()([cfg, '--shape', '32', '--out', str(out), '--cfg-options', 'model.backbone.depth=6',
                              'model.backbone.adapter.bottleneck=4']) == 0
    rows = json.loads(out.read_text())['rows']
    assert [r['depth'] for r in rows] == [6, 6, 4]
    assert '| ScaleNetViT 4->6, ParallelAdapter(bottleneck=4) | 6 |' in capsys.readouterr().out
    model = ScaleNetViT(dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0), depth=6, img_size=32,
                        patch_size=4, adapter=dict(type='ParallelAdapter', bottleneck=4))
    assert rows[0]['flops'] == count_complexity(model, X)['flops']
    assert rows[0]['params'] == count_complexity(model, X)['params']
    assert rows[1]['params'] > 1.3 * rows[0]['params'] and rows[1]['flops'] < rows[0]['flops']
    assert rows[2]['flops'] < rows[1]['flops']


def test_get_flops_tool_help_and_errors(tmp_path, capsys):
    tool = osp.join(ROOT, 'tools/analysis/get_flops.py')
    proc = subprocess.run([sys.executable, tool, '--help'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and '--shape' in proc.stdout and 'FLOP' in proc.stdout
    assert _get_flops_main()([str(tmp_path / 'missing.py')]) == 1
    assert capsys.readouterr().err.strip().startswith('error: config file not found')
    assert _get_flops_main()([osp.join(ROOT, 'configs/demo/digits_cls_scalenet.py'), '--shape', '0']) == 1
    assert '--shape takes one or two positive sizes' in capsys.readouterr().err
