"""ONNX and torch.export deployment (mmscalenet/deploy.py): checked against PyTorch, shared tensors stored once."""
import functools
import os

import pytest
import torch

from conftest import randomised, tool_main
from mmscalenet import deploy
from mmscalenet.deploy import DeployError, export_model
from mmscalenet.expansion import count_parameters
from mmscalenet.models import ScaleNetViT
from mmscalenet.models.swin import ScaleNetSwin

pytest.importorskip('onnxruntime')

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2)
SWIN_ARCH = dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2), window_size=4)


# every tensor random (std 0.05), so a wrong graph changes the output
_randomised = functools.partial(randomised, std=0.05)


def _onnx_outputs(path, x):
    session = deploy.onnx_session(path, threads=1)
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def test_grown_vit_onnx_matches_pytorch_and_stores_shared_weights_once(tmp_path):
    """A wider model so weights dominate the file: the ONNX file is < 0.65x the untied model's weights."""
    model = _randomised(ScaleNetViT(dict(embed_dims=128, num_layers=2, num_heads=4), depth=8, img_size=32,
                                    patch_size=8, adapter=dict(type='ParallelAdapter', bottleneck=8)), std=0.02)
    path = str(tmp_path / 'grown.onnx')
    report = export_model(model, path, 'onnx')
    assert sorted(report['max_abs_diff']) == [2, 3] and max(report['max_abs_diff'].values()) <= 1e-4
    assert os.listdir(tmp_path) == ['grown.onnx']          # one self-contained file, no temporary left
    untied_bytes = count_parameters(model)['untied'] * 4
    assert report['bytes'] < 0.65 * untied_bytes, (report['bytes'], untied_bytes)
    x = torch.randn(5, 3, 32, 32)                          # a batch size the check did not use
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(_onnx_outputs(path, x)[0]), model(x)[0], rtol=1e-4, atol=1e-4)


def test_featmap_vit_with_windows_and_rel_pos_exports_every_output(tmp_path):
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=64, patch_size=8, out_type='featmap', window_size=4,
                                    use_rel_pos=True, out_indices=(1, 3)))
    report = export_model(model, str(tmp_path / 'feat.onnx'), 'onnx')
    assert report['outputs'] == 2 and max(report['max_abs_diff'].values()) <= 1e-4
    outs = _onnx_outputs(str(tmp_path / 'feat.onnx'), torch.randn(2, 3, 64, 64))
    assert [o.shape for o in outs] == [(2, 32, 8, 8)] * 2


@pytest.mark.parametrize('out_type', ['featmap', 'pooled'])
def test_grown_swin_onnx_matches_pytorch(tmp_path, out_type):
    model = _randomised(ScaleNetSwin(arch=SWIN_ARCH, depths=(2, 4), img_size=64, out_type=out_type))
    report = export_model(model, str(tmp_path / 'swin.onnx'), 'onnx')
    assert report['outputs'] == (2 if out_type == 'featmap' else 1)
    assert max(report['max_abs_diff'].values()) <= 1e-4


def test_lora_with_gates_as_torch_export_program(tmp_path):
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8, adapter=dict(type='LoRA', rank=2),
                                    function_preserving=True))
    path = str(tmp_path / 'lora.pt2')
    report = export_model(model, path, 'exported')
    assert max(report['max_abs_diff'].values()) <= 1e-5
    program = torch.export.load(path)
    lifted = {tuple(t.shape) + (t.data_ptr(),) for t in program.state_dict.values()}
    assert len(program.state_dict) == len(list(model.parameters()))   # each unique tensor lifted once
    assert len(lifted) == len(program.state_dict)
    with pytest.raises(DeployError, match=r'\.pt2'):
        export_model(model, str(tmp_path / 'lora.program'), 'exported')


def test_nan_checkpoint_and_non_finite_output_are_refused_and_nothing_is_written(tmp_path):
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8))
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight[0, 0] = float('nan')
    with pytest.raises(DeployError, match='NaN or inf in 1 tensors'):
        export_model(model, str(tmp_path / 'nan.onnx'))
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8))
    with torch.no_grad():   # finite weights, infinite output: the normalised class token times 3e38 overflows
        model.norm.weight.fill_(3e38)
    with pytest.raises(DeployError, match='holds NaN or inf: the file was not kept'):
        export_model(model, str(tmp_path / 'inf.onnx'))
    assert os.listdir(tmp_path) == []


def test_a_file_that_differs_from_pytorch_is_not_kept(tmp_path, monkeypatch):
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8))
    real = deploy._onnx_runner
    monkeypatch.setattr(deploy, '_onnx_runner', lambda p: (lambda x: [o + 1e-3 for o in real(p)(x)]))
    with pytest.raises(DeployError, match=r'differs from the PyTorch model by 0.001'):
        export_model(model, str(tmp_path / 'off.onnx'))
    assert os.listdir(tmp_path) == []


def test_dynamic_height_width_and_bad_arguments_are_refused_in_one_line(tmp_path):
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8))
    with pytest.raises(DeployError, match='dynamic height/width cannot be exported'):
        export_model(model, str(tmp_path / 'm.onnx'), dynamic_hw=True)
    with pytest.raises(DeployError, match='unknown export format'):
        export_model(model, str(tmp_path / 'm.onnx'), 'tflite')
    with pytest.raises(DeployError, match='does not exist'):
        export_model(model, str(tmp_path / 'missing' / 'm.onnx'))
    assert os.listdir(tmp_path) == []


def test_a_file_fixed_to_its_size_at_another_size_is_what_the_refusal_prevents(tmp_path):
    """The trap behind the refusal: the exported file is bound to the example's H/W (batch stays dynamic)."""
    model = _randomised(ScaleNetViT(ARCH, depth=2, img_size=32, patch_size=8))
    path = str(tmp_path / 'm.onnx')
    export_model(model, path, img_size=(32, 32))
    with pytest.raises(Exception):
        _onnx_outputs(path, torch.randn(2, 3, 32, 48))


def test_export_tool_writes_a_checked_onnx_file_with_the_head_and_refuses_dynamic_hw(tmp_path, capsys):
    """tools/export.py --format onnx on a ScaleNet checkpoint with a head: logits out, checked, one line on refusal."""
    from mmscalenet.checkpoint import save_scalenet
    model = _randomised(ScaleNetViT(ARCH, depth=4, img_size=32, patch_size=8))
    head = {'weight': torch.randn(5, 32), 'bias': torch.randn(5)}
    src = str(tmp_path / 'grown.pth')
    save_scalenet(model, src, head=head)
    export = tool_main('export')
    dst = str(tmp_path / 'grown.onnx')
    assert export([src, dst, '--format', 'onnx']) == 0
    out = capsys.readouterr().out
    assert 'wrote' in out and '(logits)' in out and 'onnxruntime output == PyTorch output' in out
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = torch.nn.functional.linear(model(x)[0], head['weight'], head['bias'])
    torch.testing.assert_close(torch.from_numpy(_onnx_outputs(dst, x)[0]), expected, rtol=1e-4, atol=1e-4)
    assert export([src, str(tmp_path / 'dyn.onnx'), '--format', 'onnx', '--dynamic-hw']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'dynamic height/width cannot be exported' in err[0]
    assert not os.path.exists(tmp_path / 'dyn.onnx')
