"""tools/export.py: plain timm ViT of depth D (untied, LoRA merged) with the same outputs; refusals that say why."""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_ARCH
from mmscalenet.checkpoint import (NotMergeableError, load_scalenet, save_scalenet, timm_kwargs,
                                   untied_state_dict)
from mmscalenet.models import ScaleNetViT

EXPORT = [sys.executable, f'{ROOT}/tools/export.py']


def _load_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmscalenet_export_tool', f'{ROOT}/tools/export.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_main = _load_tool().main


def _tiny(**kw):
    kw.setdefault('img_size', 32)
    kw.setdefault('patch_size', 8)
    model = ScaleNetViT(TINY_ARCH, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():   # trained-looking weights: non-zero LoRA B, gates, norms
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _timm(model, state, num_classes=0):
    from timm.models.vision_transformer import VisionTransformer
    ref = VisionTransformer(**timm_kwargs(model, num_classes)).eval()
    ref.load_state_dict(state)   # strict
    return ref


@pytest.mark.parametrize('kw', [
    dict(depth=8, adapter=dict(type='LoRA', rank=2)),
    dict(depth=6, mapping='interleave', adapter=dict(type='LoRA', rank=3, targets=('qkv', 'fc2')),
         function_preserving=True, unshared=('norm',)),
    dict(depth=5, mapping=[0, 1, 2, 3, 1], adapter=None, function_preserving=True),
], ids=['lora-cyclic', 'lora-interleave-gates-norms', 'explicit-noadapter-gates'])
def test_untied_export_equals_scalenet(kw):
    model = _tiny(**kw)
    state = untied_state_dict(model)
    ref = _timm(model, state)
    assert ref.blocks.__len__() == model.plan.depth
    # untied: every block owns its tensors
    ptrs = [v.data_ptr() for v in state.values()]
    assert len(ptrs) == len(set(ptrs))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model(x)[0], ref.forward_head(ref.forward_features(x), pre_logits=True)
    assert (ours - theirs).abs().max() < 1e-5
    # the reference (unfused, unmerged) path agrees too: the merge is exact, not just the fused forward
    with torch.no_grad():
        assert (model.set_fused(False)(x)[0] - theirs).abs().max() < 1e-5


@pytest.mark.parametrize('kw, reason', [
    (dict(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4)), 'ReLU'),
    (dict(depth=6, adapter=None, out_type='featmap'), 'class'),
    (dict(depth=6, adapter=None, out_type='featmap', window_size=2), 'window'),
])
def test_unmergeable_models_refused_with_reason(kw, reason):
    with pytest.raises(NotMergeableError, match=reason) as info:
        untied_state_dict(_tiny(**kw))
    assert '--format scalenet' in str(info.value)


def test_tool_exports_timm_file_with_head(tmp_path):
    model = _tiny(depth=7, adapter=dict(type='LoRA', rank=2), function_preserving=True)
    head = {'weight': torch.randn(5, 64), 'bias': torch.randn(5)}
    src, dst = tmp_path / 'grown.pth', tmp_path / 'plain.pth'
    save_scalenet(model, str(src), head=head)
    proc = subprocess.run(EXPORT + [str(src), str(dst)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert 'check: timm VisionTransformer output == ScaleNetViT output' in proc.stdout
    state = torch.load(dst, weights_only=True)           # a bare state dict of plain tensors
    ref = _timm(model, state, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.nn.functional.linear(model(x)[0], head['weight'], head['bias'])
        assert (ref(x) - expected).abs().max() < 1e-5
    # safetensors output loads as well
    dst2 = tmp_path / 'plain.safetensors'
    assert export_main([str(src), str(dst2), '--no-head', '--skip-check']) == 0
    from safetensors.torch import load_file
    assert 'head.weight' not in load_file(str(dst2)) and len(load_file(str(dst2))) == len(state) - 2


def test_tool_refuses_parallel_adapter_and_offers_shared_format(tmp_path, capsys):
    model = _tiny(depth=6, adapter=dict(type='ParallelAdapter', bottleneck=4))
    src, dst = tmp_path / 'grown.pth', tmp_path / 'plain.pth'
    save_scalenet(model, str(src))
    assert export_main([str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert 'ReLU' in err and '--format scalenet' in err
    assert not dst.exists()
    # the offered alternative works and round-trips
    dst = tmp_path / 'shared.safetensors'
    assert export_main([str(src), str(dst), '--format', 'scalenet']) == 0
    loaded, _ = load_scalenet(str(dst))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_tool_errors_and_help(tmp_path, capsys):
    proc = subprocess.run(EXPORT + ['--help'], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and '--format' in proc.stdout and 'ParallelAdapter' in proc.stdout
    assert export_main([str(tmp_path / 'missing.pth'), str(tmp_path / 'o.pth')]) == 1
    assert 'missing.pth' in capsys.readouterr().err and not (tmp_path / 'o.pth').exists()
    # a plain timm checkpoint has no plan: asks for the config
    torch.save({'pos_embed': torch.zeros(1, 17, 64)}, tmp_path / 'timm.pth')
    assert export_main([str(tmp_path / 'timm.pth'), str(tmp_path / 'o.pth')]) == 1
    assert '--config' in capsys.readouterr().err and not (tmp_path / 'o.pth').exists()
    # a corrupt source
    (tmp_path / 'bad.pth').write_bytes(b'PK\x03\x04 truncated')
    assert export_main([str(tmp_path / 'bad.pth'), str(tmp_path / 'o.pth')]) == 1
    assert 'not a readable' in capsys.readouterr().err and not (tmp_path / 'o.pth').exists()
