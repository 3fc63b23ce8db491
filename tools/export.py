#!/usr/bin/env python
"""Export a ScaleNet model as a plain timm VisionTransformer / SwinTransformer of the grown depths, or in the compact
shared format.

--format timm (default) writes the state dict of timm's VisionTransformer(depth=D, ...): every shared tensor
untied (one copy per position), LoRA deltas merged into the weights, function-preserving gates folded into
attn.proj / mlp.fc2. The result loads into timm without mmscalenet and computes the same outputs; the tool checks
that on a random batch before writing. Models with ParallelAdapter adapters have no such equivalent (ReLU between
the adapter's projections) and are refused: export them with --format scalenet.

--format scalenet writes the unique tensors + the depth plan + the adapters (each shared tensor once): compact,
safetensors-compatible, loaded with mmscalenet (mmscalenet.checkpoint.load_scalenet or init_cfg=Pretrained).

--format onnx / --format exported (DST *.pt2) write the model as an ONNX file / a torch.export program with its
classifier head when SRC has one (--no-head: the backbone's outputs, every feature map of a detection backbone):
shared tensors stored once, dynamic batch, H and W fixed to the model's img_size or --img-size (dynamic H/W is
refused: the file would be bound to the example size). The file is run in onnxruntime (torch.export.load) at two
batch sizes and compared with PyTorch before it is kept (--atol). See mmscalenet/deploy.py.

Both backbone families go through the same path; SRC's metadata (its recorded family) or --config's
model.backbone.type says which. A ScaleNetSwin exports to timm's SwinTransformer (depths = the grown depths; the
last stage's output norm becomes timm's norm, the other stages' output norms are not part of timm's model).

SRC is a ScaleNet-format checkpoint (tools/expand.py, save_scalenet) or a training checkpoint of tools/train.py
(its metadata describes the backbone); with --config, the backbone is built from the config's model.backbone
instead. DST ending in .safetensors gives a safetensors file, anything else a torch.save file of plain tensors. DST
is written only if everything succeeded; an existing DST only with --force; SRC itself or a symbolic link never.

Examples:
    python tools/export.py work_dirs/lora_run/epoch_100.pth deit-s-24l-timm.pth
    python tools/export.py grown.pth grown.safetensors --format scalenet
    python tools/export.py work_dirs/run/epoch_100.pth model.onnx --format onnx --img-size 224
    python -c "import timm, torch; m = timm.models.vision_transformer.VisionTransformer(depth=24, embed_dim=384, \\
        num_heads=6, num_classes=1000); m.load_state_dict(torch.load('deit-s-24l-timm.pth'))"
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('src', help='ScaleNet-format or tools/train.py checkpoint (.pth / .safetensors)')
    p.add_argument('dst', help='output file (.pth or .safetensors; .onnx / .pt2 for those formats)')
    p.add_argument('--format', choices=['timm', 'scalenet', 'onnx', 'exported'], default='timm',
                   help='timm: plain untied VisionTransformer state dict (default); scalenet: shared format; onnx: '
                        'an ONNX file; exported: a torch.export program (.pt2)')
    p.add_argument('--img-size', type=int, nargs='+', default=None, metavar='H [W]',
                   help='onnx / exported: the input size fixed in the file (default: the model\'s img_size)')
    p.add_argument('--dynamic-hw', action='store_true',
                   help='onnx / exported: ask for dynamic height and width (refused with the reason: not supported)')
    p.add_argument('--config', help='build the backbone from this config\'s model.backbone (for checkpoints '
                                    'without ScaleNet metadata)')
    p.add_argument('--no-head', action='store_true', help='leave the classifier head out')
    p.add_argument('--skip-check', action='store_true',
                   help='do not compare the exported timm model with the ScaleNet model before writing')
    p.add_argument('--atol', type=float, default=1e-4, help='tolerance of the output check (fp32, default 1e-4)')
    p.add_argument('--allow-nonfinite', action='store_true',
                   help='read and write tensors holding NaN or inf (refused by default)')
    p.add_argument('--skip-checksum', action='store_true',
                   help='do not verify the SHA-256 that ScaleNet-format files carry')
    p.add_argument('--force', action='store_true',
                   help='overwrite an existing DST (never SRC itself, never through a symbolic link)')
    return p.parse_args(argv)


def _backbone_from_config(path):
    """The backbone of --config's ``model.backbone`` (either family; its ``type`` says which)."""
    from mmscalenet.checkpoint import FAMILIES
    from mmscalenet.tools_common import ToolError, load_config
    cfg = load_config(path)
    model_cfg = cfg.get('model', None)
    backbone = model_cfg.get('backbone', None) if model_cfg is not None else None
    if backbone is None:
        raise ToolError(f'{path} has no model.backbone')
    kw = dict(backbone)
    kind = str(kw.pop('type', None)).split('.')[-1]
    kw.pop('init_cfg', None)
    classes = {cls.__name__: cls for cls, _, _ in FAMILIES.values()}
    if kind not in classes:
        raise ToolError(f'{path}: model.backbone.type is {kind!r}; tools/export.py exports {sorted(classes)}')
    return classes[kind](**kw)


def load_model(src, config=None, allow_nonfinite=False, verify_checksum=True):
    """(backbone with the checkpoint's weights, head tensors) from SRC, checked by ``read_checkpoint``: rebuilt from
    its ScaleNet metadata (the family it records), or --config's backbone loaded from it (any layout it takes)."""
    from mmscalenet.checkpoint import (CheckpointError, backbone_state_dict, build_from_meta, load_backbone,
                                       match_gate_shapes, read_checkpoint, read_record)
    model = _backbone_from_config(config) if config is not None else None   # --config's mistakes first
    state, meta = read_checkpoint(src, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
    if model is not None:
        report = load_backbone(model, src, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
        missing = report['new']
    else:
        record = read_record(meta, src)
        if record is None or record.config is None:
            raise CheckpointError(f'{src} carries no ScaleNet metadata (the backbone\'s config, plans, adapters): '
                                  f'pass the config it was trained with (--config CONFIG)')
        model = build_from_meta(meta)
        missing, _ = model.load_state_dict(match_gate_shapes(model, backbone_state_dict(state, model.family)[0]),
                                           strict=False)
    if missing:
        raise CheckpointError(f'{src} does not hold the whole backbone: missing {sorted(missing)[:5]}'
                              f'{" ..." if len(missing) > 5 else ""}')
    return model.eval(), backbone_state_dict(state, model.family)[1]


def main(argv=None):
    args = parse_args(argv)
    return _reporting(args, export)


def _reporting(args, export):
    """Run one export; a user mistake -> one line on stderr and status 2 (not mergeable: another --format) or 1."""
    from mmscalenet.checkpoint import CheckpointError, NotMergeableError
    from mmscalenet.tools_common import ToolError, check_destination, write_error
    try:
        check_destination(args.dst, args.force, (args.src,))
        return export(args)
    except NotMergeableError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except (CheckpointError, ToolError, FileNotFoundError, ValueError, TypeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except OSError as err:
        print(write_error(args.dst, err), file=sys.stderr)
        return 1


def _write_untied(args, state, kwargs, check, meta_key):
    """The untied timm state dict: finite (unless allowed), checked against the model (unless skipped), saved."""
    from mmscalenet.checkpoint import atomic_save, check_finite, save_safetensors
    if not args.allow_nonfinite:
        check_finite(state, args.dst)
    if not args.skip_check:
        check(state, kwargs)
    if args.dst.endswith('.safetensors'):
        save_safetensors(state, kwargs, args.dst, meta_key=meta_key)
    else:
        atomic_save(state, args.dst)


_TIMM = {'vit': ('timm.models.vision_transformer', 'VisionTransformer', 'timm_vision_transformer_kwargs'),
         'swin': ('timm.models.swin_transformer', 'SwinTransformer', 'timm_swin_transformer_kwargs')}


def _features(model) -> int:
    """Width of the backbone's final features (the classifier head's input)."""
    width = model.num_features
    return int(width[-1]) if isinstance(width, tuple) else int(width)


def export(args):
    """tools/export.py for either family: the family's timm model (untied, checked), or the ScaleNet format."""
    from mmscalenet.checkpoint import FAMILIES, check_finite, save_scalenet, timm_head, timm_kwargs, untied_state_dict
    model, head = load_model(args.src, args.config, args.allow_nonfinite, not args.skip_checksum)
    head = {} if args.no_head else timm_head(head, _features(model))
    stacks = model.growth_stacks()
    bases, depths = [p.base_depth for _, p, _ in stacks], [p.depth for _, p, _ in stacks]
    if args.format in ('onnx', 'exported'):
        return _deploy(args, model, head)
    if args.format == 'scalenet':
        if not args.allow_nonfinite:
            check_finite(dict(model.state_dict(), **{f'head.{k}': v for k, v in head.items()}), args.dst)
        save_scalenet(model, args.dst, head=head or None)
        print(f'wrote {args.dst}: ScaleNet format ({FAMILIES[model.family][0].__name__}), '
              f'{bases[0] if len(bases) == 1 else tuple(bases)} shared layers -> '
              f'{depths[0] if len(depths) == 1 else tuple(depths)} positions, '
              f'adapter={model.adapter_cfg["type"] if model.adapter_cfg else None}')
        return 0
    state = untied_state_dict(model, head=head or None)
    kwargs = timm_kwargs(model, num_classes=int(head['weight'].shape[0]) if head else 0)
    _, timm_name, meta_key = _TIMM[model.family]
    _write_untied(args, state, kwargs, lambda st, kw: _check(model, head, st, kw, args.atol), meta_key)
    print(f'wrote {args.dst}: timm {timm_name}({", ".join(f"{k}={v!r}" for k, v in kwargs.items())}), '
          f'{sum(v.numel() for v in state.values()) / 1e6:.2f} M parameters (untied)')
    print(f'load with: {timm_name}(**' + json.dumps({k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in kwargs.items()}) + ').load_state_dict(...)')
    return 0


def _deploy(args, model, head):
    """--format onnx / exported: mmscalenet.deploy.export_model (checked against PyTorch before it is kept)."""
    from mmscalenet.deploy import DeployError, WithHead, export_model
    if args.img_size is not None and len(args.img_size) not in (1, 2):
        raise ValueError(f'--img-size takes H or H W, got {args.img_size}')
    try:
        report = export_model(WithHead(model, head or None), args.dst, args.format, img_size=args.img_size,
                              dynamic_hw=args.dynamic_hw, atol=args.atol)
    except DeployError as err:
        raise ValueError(str(err)) from None
    worst = max(report['max_abs_diff'].values())
    print(f'wrote {args.dst}: {args.format}, input (batch, {", ".join(map(str, report["input_size"]))}) with a '
          f'dynamic batch, {report["outputs"]} output(s){" (logits)" if head else ""}, '
          f'{report["bytes"] / 1e6:.1f} MB ({report["unique_parameter_bytes"] / 1e6:.1f} MB of unique parameters)')
    print(f'check: {"onnxruntime" if args.format == "onnx" else "torch.export.load"} output == PyTorch output at '
          f'batch {sorted(report["max_abs_diff"])} (max abs diff {worst:.2e})')
    return 0


def _check(model, head, state, kwargs, atol):
    """The exported timm model (strict load) computes the backbone's final features / logits on a random batch."""
    import importlib

    import torch

    from mmscalenet.checkpoint import FAMILIES, CheckpointError
    module, timm_name, _ = _TIMM[model.family]
    ref = getattr(importlib.import_module(module), timm_name)(**kwargs).eval()
    ref.load_state_dict(state)          # strict: every key of timm's model, nothing else
    x = torch.randn(2, kwargs['in_chans'], *model.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)[-1]
        if ours.dim() == 4:   # a Swin's last normed map: timm average-pools it
            ours = ours.mean((2, 3))
        if head:
            ours = torch.nn.functional.linear(ours, head['weight'], head['bias'])
        theirs = ref(x) if head else ref.forward_head(ref.forward_features(x), pre_logits=True)
    diff = (ours - theirs).abs().max().item()
    backbone = FAMILIES[model.family][0].__name__
    if not diff <= atol:   # NaN compares false: a NaN output fails the check
        raise CheckpointError(f'the exported timm {timm_name} differs from the ScaleNet model by '
                              f'{diff:.3g} (> {atol}); nothing was written')
    print(f'check: timm {timm_name} output == {backbone} output (max abs diff {diff:.2e})')


if __name__ == '__main__':
    sys.exit(main())
