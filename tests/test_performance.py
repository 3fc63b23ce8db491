"""Performance plumbing (not timings): compile-ability and the benchmark tool's output."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from mmscalenet.models import ScaleNetViT

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=2.0)


@pytest.mark.parametrize('kwargs', [
    dict(adapter=dict(type='ParallelAdapter', bottleneck=4)),
    dict(adapter=dict(type='LoRA', rank=2), drop_path_rate=0.1),
    dict(out_type='featmap', window_size=2, use_rel_pos=True, with_cp=True, function_preserving=True),
])
@pytest.mark.parametrize('amp', [False, True])
def test_backbone_compiles_with_fullgraph(kwargs, amp):
    torch.manual_seed(0)
    model = ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8, **kwargs).train()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')  # graph capture; no C++ codegen needed
    x = torch.randn(2, 3, 32, 40)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        out = compiled(x)[0].float()
    if amp:
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())
        return
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    if not kwargs.get('drop_path_rate'):
        model.eval()
        with torch.no_grad():
            assert torch.allclose(compiled(x)[0], model(x)[0], atol=1e-5)


def test_benchmark_cpu_json_reports_every_field():
    cmd = [sys.executable, f'{ROOT}/tools/benchmark.py', '--device', 'cpu', '--arch', '32,2,2', '--img-size', '32',
           '--batch-size', '2', '--warmup', '1', '--steps', '1', '--repeats', '2', '--json']
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc['settings']['depth'] == 4 and doc['settings']['base_depth'] == 2
    names = [r['model'] for r in doc['results']]
    assert names[0].startswith('scalenet 2->4') and names[1:] == ['timm ViT depth 4', 'timm ViT depth 2']
    for row in doc['results']:
        for key in ('params', 'train_img_per_s', 'infer_img_per_s', 'train_peak_mib', 'infer_peak_mib'):
            assert row[key] > 0, (row['model'], key)
        assert len(row['train_repeats']) == 2
    sn, timm_same = doc['results'][0], doc['results'][1]
    assert doc['ratios']['params_vs_timm_same_depth'] == pytest.approx(sn['params'] / timm_same['params'])
    assert doc['ratios']['train_vs_timm_same_depth'] == pytest.approx(
        sn['train_img_per_s'] / timm_same['train_img_per_s'])
    assert sn['params'] < timm_same['params']


def test_benchmark_help_and_bad_flags():
    res = subprocess.run([sys.executable, f'{ROOT}/tools/benchmark.py', '--help'], capture_output=True, text=True)
    assert res.returncode == 0 and '--detection' in res.stdout and '--compile' in res.stdout
    res = subprocess.run([sys.executable, f'{ROOT}/tools/benchmark.py', '--modes', 'fly'], capture_output=True,
                         text=True)
    assert res.returncode == 2 and '--modes' in res.stderr
