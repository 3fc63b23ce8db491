"""Deployment: a grown model as an ONNX file or a ``torch.export`` program, checked against PyTorch before it is kept.

Pure torch at import time (``onnx`` / ``onnxruntime`` are imported when used). What it promises:

* **Shared tensors stored once.** The exporters lift each parameter once, however many positions run it, so a
  grown model's file is about the size of its unique parameters, not of the untied model of the same depth.
  LoRA deltas are kept as they are (merging them would give every position its own copy of the shared weights).
* **Checked before it is kept.** The file is written under a temporary name, run on random input at two batch
  sizes (onnxruntime for ONNX, ``torch.export.load`` for programs) and compared with the PyTorch model; only a
  file within ``atol`` with finite outputs is moved to its name. A model holding NaN / inf is refused first.
* **Dynamic batch; fixed height and width.** Both families fix H and W when traced: the ViT's position embedding
  is resampled only when the grid differs from the pretraining one (a Python branch on the shape, so
  ``torch.export`` guards on the example size), and Swin's window padding depends on them. An ONNX file with
  "dynamic" H/W would fail later in onnxruntime with a broadcast error, so ``dynamic_hw=True`` is refused in one
  line: export one file per input size instead.
"""
from __future__ import annotations

import math
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

FORMATS = ('onnx', 'exported')


class DeployError(ValueError):
    """The model cannot be exported as asked, or the exported file does not compute what the model does."""


class WithHead(nn.Module):
    """A backbone and the linear classifier head a ScaleNet checkpoint carries: ``forward`` gives the logits."""

    def __init__(self, backbone: nn.Module, head: Optional[Dict[str, torch.Tensor]]):
        super().__init__()
        self.backbone = backbone
        self.head = None
        if head:
            self.head = nn.Linear(head['weight'].shape[1], head['weight'].shape[0])
            with torch.no_grad():
                self.head.weight.copy_(head['weight'])
                self.head.bias.copy_(head['bias'])

    def forward(self, x: torch.Tensor):
        out = self.backbone(x)
        if self.head is None:
            return out
        feats = out[-1]
        if feats.dim() == 4:   # a featmap backbone: timm's average pool before the head
            feats = feats.mean((2, 3))
        return self.head(feats)


def _input_size(model: nn.Module, img_size: Optional[Union[int, Sequence[int]]]) -> Tuple[int, int, int]:
    """(C, H, W) of the example input: ``img_size`` or the model's own (its pretraining grid)."""
    backbone = getattr(model, 'backbone', model)
    channels = int(backbone.patch_embed.proj.in_channels)
    if img_size is None:
        img_size = getattr(backbone, 'img_size', None)
        if img_size is None:
            raise DeployError(f'{type(backbone).__name__} does not say its input size: give img_size')
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    size = tuple(int(s) for s in img_size)
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or min(size) < 1:
        raise DeployError(f'img_size must be one positive int or (H, W), got {img_size!r}')
    return (channels, *size)


def check_finite_parameters(model: nn.Module) -> None:
    """Refuse a model holding NaN / inf before anything is written."""
    bad = [name for name, t in list(model.named_parameters()) + list(model.named_buffers())
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise DeployError(f'the model holds NaN or inf in {len(bad)} tensors ({", ".join(bad[:3])}'
                          f'{", ..." if len(bad) > 3 else ""}): nothing exported')


def _outputs(value: Any) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _outputs(v)]
    raise DeployError(f'the model returns {type(value).__name__}: export needs tensors or tuples of tensors')


def _compare(expected: Sequence[torch.Tensor], got: Sequence[Any], atol: float, what: str) -> float:
    if len(expected) != len(got):
        raise DeployError(f'{what} gives {len(got)} outputs, the model {len(expected)}')
    worst = 0.0
    for i, (e, g) in enumerate(zip(expected, got)):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(e.shape):
            raise DeployError(f'{what} output {i} has shape {tuple(g.shape)}, the model {tuple(e.shape)}')
        if not torch.isfinite(g).all():
            raise DeployError(f'{what} output {i} holds NaN or inf: the file was not kept')
        worst = max(worst, (g.float() - e.float()).abs().max().item() if g.numel() else 0.0)
    if not worst <= atol:
        raise DeployError(f'{what} differs from the PyTorch model by {worst:.3g} (> atol {atol:g}): the file was '
                          f'not kept')
    return worst


def _check_batches(batches: Sequence[int]) -> Tuple[int, ...]:
    batches = tuple(int(b) for b in batches)
    if not batches or min(batches) < 1:
        raise DeployError(f'check batches must be positive, got {batches}')
    return batches


def export_model(model: nn.Module, path: str, fmt: str = 'onnx', *,
                 img_size: Optional[Union[int, Sequence[int]]] = None, dynamic_batch: bool = True,
                 dynamic_hw: bool = False, atol: float = 1e-4, check_batches: Sequence[int] = (2, 3),
                 seed: int = 0) -> Dict[str, Any]:
    """Export ``model`` (eval mode) to ``path`` as ``fmt`` ('onnx' | 'exported'), check it, and return a report.

    The report holds the file size, the unique parameter bytes of the model, the input size and the largest
    difference from PyTorch per checked batch size. Nothing is left at ``path`` unless every check passed.
    """
    if fmt not in FORMATS:
        raise DeployError(f'unknown export format {fmt!r}: use one of {FORMATS}')
    if dynamic_hw:
        raise DeployError('dynamic height/width cannot be exported: the ViT resamples its position embedding and '
                          'Swin pads to whole windows in Python at trace time, so the file would be fixed to the '
                          'example size and fail on others; export one file per input size (img_size / --img-size)')
    if not math.isfinite(atol) or atol < 0:
        raise DeployError(f'atol must be a finite number >= 0, got {atol!r}')
    if fmt == 'exported' and not path.endswith('.pt2'):
        raise DeployError(f'{path}: a torch.export program is a .pt2 archive (torch.export.load reads no other '
                          f'name); name the file *.pt2')
    batches = _check_batches(check_batches)
    model = model.eval()
    check_finite_parameters(model)
    size = _input_size(model, img_size)
    gen = torch.Generator().manual_seed(seed)
    # traced at batch 2 even when checked at 1: torch.export specialises a dimension of size 1 to a constant
    example = torch.randn(2 if dynamic_batch else batches[0], *size, generator=gen)
    checks = [torch.randn(b, *size, generator=gen) for b in batches] if dynamic_batch else [example]
    with torch.no_grad():
        expected = [_outputs(model(x)) for x in checks]

    out_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(out_dir):
        raise DeployError(f'{path}: its folder {out_dir} does not exist')
    tmp_dir = tempfile.mkdtemp(prefix='.export-', dir=out_dir)
    tmp = os.path.join(tmp_dir, os.path.basename(path))
    try:
        dims = ({0: torch.export.Dim('batch', min=1, max=4096)},) if dynamic_batch else None
        with torch.no_grad():
            if fmt == 'onnx':
                _write_onnx(model, example, tmp, dims, len(expected[0]))
                run = _onnx_runner(tmp)
            else:
                program = torch.export.export(model, (example,), dynamic_shapes=dims)
                torch.export.save(program, tmp)
                loaded = torch.export.load(tmp).module()
                run = lambda x: _outputs(loaded(x))   # noqa: E731
        diffs = {}
        for x, exp in zip(checks, expected):
            diffs[int(x.shape[0])] = _compare(exp, run(x), atol, f'the {fmt} file at batch {x.shape[0]}')
        os.replace(tmp, path)
    except DeployError:
        raise
    except Exception as err:   # the exporters' own errors: one line, with the exception type
        raise DeployError(f'{fmt} export of {type(model).__name__} failed: {type(err).__name__}: '
                          f'{str(err).strip().splitlines()[0] if str(err).strip() else ""}') from err
    finally:
        for name in os.listdir(tmp_dir):
            os.remove(os.path.join(tmp_dir, name))
        os.rmdir(tmp_dir)
    unique = {id(p): p for p in model.parameters()}
    return dict(format=fmt, path=path, bytes=os.path.getsize(path), input_size=list(size),
                unique_parameter_bytes=sum(p.numel() * p.element_size() for p in unique.values()),
                max_abs_diff=diffs, dynamic_batch=dynamic_batch, outputs=len(expected[0]))


def _write_onnx(model: nn.Module, example: torch.Tensor, path: str, dims: Any, num_outputs: int) -> None:
    """torch's dynamo ONNX exporter, one self-contained file (weights inside, not beside it)."""
    names = ['output'] if num_outputs == 1 else [f'output{i}' for i in range(num_outputs)]
    torch.onnx.export(model, (example,), path, dynamo=True, dynamic_shapes=dims, input_names=['input'],
                      output_names=names, external_data=False, verbose=False)


def _onnx_runner(path: str):
    try:
        import onnxruntime as ort
    except ImportError as err:   # pragma: no cover - the install pins it
        raise DeployError(f'onnxruntime is needed to check the ONNX file ({err}): pip install onnxruntime') from err
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(o) for o in session.run(None, {name: x.numpy()})]


def onnx_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path`` (``tools/benchmark.py --onnx``)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
