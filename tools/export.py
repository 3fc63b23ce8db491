#!/usr/bin/env python
"""Export a ScaleNet model as a plain timm VisionTransformer of depth D, or in the compact shared format.

--format timm (default) writes the state dict of timm's VisionTransformer(depth=D, ...): every shared tensor
untied (one copy per position), LoRA deltas merged into the weights, function-preserving gates folded into
attn.proj / mlp.fc2. The result loads into timm without mmscalenet and computes the same outputs; the tool checks
that on a random batch before writing. Models with ParallelAdapter adapters have no such equivalent (ReLU between
the adapter's projections) and are refused: export them with --format scalenet.

--format scalenet writes the unique tensors + the depth plan + the adapters (each shared tensor once): compact,
safetensors-compatible, loaded with mmscalenet (mmscalenet.checkpoint.load_scalenet or init_cfg=Pretrained).

A ScaleNetSwin (its metadata or --config's backbone says so) exports the same way to timm's SwinTransformer
(depths = the grown depths; the last stage's output norm becomes timm's norm, the other stages' output norms are
not part of timm's model).

SRC is a ScaleNet-format checkpoint (tools/expand.py, save_scalenet) or a training checkpoint of tools/train.py
(its metadata describes the backbone); with --config, the backbone is built from the config's model.backbone
instead. DST ending in .safetensors gives a safetensors file, anything else a torch.save file of plain tensors. DST
is written only if everything succeeded.

Examples:
    python tools/export.py work_dirs/lora_run/epoch_100.pth deit-s-24l-timm.pth
    python tools/export.py grown.pth grown.safetensors --format scalenet
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
    p.add_argument('dst', help='output file (.pth or .safetensors)')
    p.add_argument('--format', choices=['timm', 'scalenet'], default='timm',
                   help='timm: plain untied VisionTransformer state dict (default); scalenet: shared format')
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
    return p.parse_args(argv)


def _backbone_from_config(path):
    from mmscalenet.tools_common import load_config
    cfg = load_config(path)
    model_cfg = cfg.get('model', None)
    backbone = model_cfg.get('backbone', None) if model_cfg is not None else None
    if backbone is None:
        from mmscalenet.tools_common import ToolError
        raise ToolError(f'{path} has no model.backbone')
    kw = dict(backbone)
    kw.pop('type', None)
    kw.pop('init_cfg', None)
    from mmscalenet.models import ScaleNetViT
    return ScaleNetViT(**kw)


def load_model(src, config=None, allow_nonfinite=False, verify_checksum=True):
    """(ScaleNetViT with the checkpoint's weights, head tensors) from SRC, checked by ``read_checkpoint``."""
    from mmscalenet.checkpoint import (CheckpointError, backbone_state_dict, build_from_meta, check_tensors_fit,
                                       match_gate_shapes, read_checkpoint)
    state, meta = read_checkpoint(src, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
    backbone_state, head = backbone_state_dict(state)
    if config is not None:
        model = _backbone_from_config(config)
        check_tensors_fit(model.state_dict(), backbone_state, src)
    elif 'arch' in meta:
        model = build_from_meta(meta)
    else:
        raise CheckpointError(f'{src} carries no ScaleNet metadata (depth plan, adapters): pass the config it was '
                              f'trained with (--config CONFIG)')
    missing, unexpected = model.load_state_dict(match_gate_shapes(model, backbone_state), strict=False)
    if missing:
        raise CheckpointError(f'{src} does not hold the whole backbone: missing {sorted(missing)[:5]}'
                              f'{" ..." if len(missing) > 5 else ""}')
    return model.eval(), head


def main(argv=None):
    args = parse_args(argv)
    if is_swin_source(args.src, args.config):
        return _reporting(args, export_swin)
    return _reporting(args, export_vit)


def _reporting(args, export):
    """Run one export; a user mistake -> one line on stderr and status 2 (not mergeable: another --format) or 1."""
    from mmscalenet.checkpoint import CheckpointError, NotMergeableError
    from mmscalenet.tools_common import ToolError, check_output_path, write_error
    try:
        check_output_path(args.dst)
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


def export_vit(args):
    """tools/export.py for a ScaleNetViT: timm VisionTransformer state dict (checked), or the ScaleNet format."""
    from mmscalenet.checkpoint import check_finite, save_scalenet, timm_head, timm_kwargs, untied_state_dict
    model, head = load_model(args.src, args.config, args.allow_nonfinite, not args.skip_checksum)
    head = {} if args.no_head else timm_head(head, model.embed_dims)
    if args.format == 'scalenet':
        if not args.allow_nonfinite:
            check_finite(dict(model.state_dict(), **{f'head.{k}': v for k, v in head.items()}), args.dst)
        save_scalenet(model, args.dst, head=head or None)
        print(f'wrote {args.dst}: ScaleNet format, {model.plan.base_depth} shared layers -> {model.plan.depth} '
              f'positions, adapter={model.adapter_cfg["type"] if model.adapter_cfg else None}')
        return 0
    state = untied_state_dict(model, head=head or None)
    kwargs = timm_kwargs(model, num_classes=int(head['weight'].shape[0]) if head else 0)
    _write_untied(args, state, kwargs, lambda st, kw: _check(model, head, st, kw, args.atol),
                  'timm_vision_transformer_kwargs')
    print(f'wrote {args.dst}: timm VisionTransformer({", ".join(f"{k}={v!r}" for k, v in kwargs.items())}), '
          f'{sum(v.numel() for v in state.values()) / 1e6:.2f} M parameters (untied)')
    print('load with: VisionTransformer(**' + json.dumps({k: list(v) if isinstance(v, tuple) else v
                                                         for k, v in kwargs.items()}) + ').load_state_dict(...)')
    return 0


def _check(model, head, state, kwargs, atol):
    import torch
    from timm.models.vision_transformer import VisionTransformer

    from mmscalenet.checkpoint import CheckpointError
    ref = VisionTransformer(**kwargs).eval()
    ref.load_state_dict(state)          # strict: every key of timm's model, nothing else
    x = torch.randn(2, model.patch_embed.proj.in_channels, *model.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)[0]
        if head:
            ours = torch.nn.functional.linear(ours, head['weight'], head['bias'])
            theirs = ref(x)
        else:
            theirs = ref.forward_head(ref.forward_features(x), pre_logits=True)
    diff = (ours - theirs).abs().max().item()
    if not diff <= atol:   # NaN compares false: a NaN output fails the check
        raise CheckpointError(f'the exported timm model differs from the ScaleNet model by {diff:.3g} (> {atol}); '
                              f'nothing was written')
    print(f'check: timm VisionTransformer output == ScaleNet output (max abs diff {diff:.2e})')


# ---- ScaleNetSwin -> timm SwinTransformer ------------------------------------------------------------------------
def is_swin_source(src, config=None):
    """True when --config's backbone or SRC's ScaleNet metadata is a ScaleNetSwin (a cheap look: the file is
    memory-mapped; anything unreadable is left to the ViT path, which reports it)."""
    try:
        if config is not None:
            from mmscalenet.tools_common import load_config
            return load_config(config).model.backbone.type == 'ScaleNetSwin'
        if src.endswith('.safetensors'):
            from safetensors import safe_open
            with safe_open(src, framework='pt') as f:
                meta = json.loads((f.metadata() or {}).get('scalenet', '{}'))
        else:
            import argparse as _argparse

            import torch
            with torch.serialization.safe_globals([_argparse.Namespace]):
                obj = torch.load(src, map_location='cpu', weights_only=True, mmap=True)
            from mmscalenet.checkpoint import split_checkpoint
            meta = split_checkpoint(obj)[1]
        return meta.get('backbone') == 'ScaleNetSwin'
    except Exception:   # noqa: BLE001 - a look only; the export proper reports the error
        return False


def load_swin_model(src, config=None, allow_nonfinite=False, verify_checksum=True):
    """(ScaleNetSwin with SRC's weights, head tensors): rebuilt from SRC's metadata, or from --config's backbone."""
    from mmscalenet.checkpoint import CheckpointError, resolve_checkpoint, split_checkpoint
    from mmscalenet.swin_checkpoint import load_swin
    if config is None:
        model, head = load_swin(src, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum)
        return model.eval(), head
    from mmscalenet.models.swin import ScaleNetSwin
    from mmscalenet.tools_common import load_config
    kw = dict(load_config(config).model.backbone)
    for key in ('type', 'init_cfg'):
        kw.pop(key, None)
    model = ScaleNetSwin(**kw)
    obj = resolve_checkpoint(src)
    report = model.load_pretrained(obj, allow_nonfinite=allow_nonfinite, verify_checksum=verify_checksum, name=src)
    if report['new']:
        raise CheckpointError(f'{src} does not hold the whole backbone: missing {report["new"][:5]}'
                              f'{" ..." if len(report["new"]) > 5 else ""}')
    state = split_checkpoint(obj)[0]
    return model.eval(), {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.')}


def export_swin(args):
    """tools/export.py for a ScaleNetSwin: timm SwinTransformer state dict (checked), or the ScaleNet-Swin format."""
    from mmscalenet.checkpoint import NotMergeableError, check_finite, timm_head
    from mmscalenet.swin_checkpoint import save_swin, swin_timm_state_dict, timm_swin_kwargs
    model, head = load_swin_model(args.src, args.config, args.allow_nonfinite, not args.skip_checksum)
    head = {} if args.no_head else timm_head(head, model.num_features[-1])
    if args.format == 'scalenet':
        if not args.allow_nonfinite:
            check_finite(dict(model.state_dict(), **{f'head.{k}': v for k, v in head.items()}), args.dst)
        save_swin(model, args.dst, head=head or None)
        print(f'wrote {args.dst}: ScaleNet-Swin format, stages {tuple(p.base_depth for p in model.plans)} -> '
              f'{tuple(p.depth for p in model.plans)}, adapter='
              f'{model.adapter_cfg["type"] if model.adapter_cfg else None}')
        return 0
    last = len(model.plans) - 1
    if last not in model.out_indices:
        raise NotMergeableError(f'the backbone has no output norm of its last stage (out_indices='
                                f'{model.out_indices}), which timm\'s SwinTransformer needs as its final norm: '
                                f'export with --format scalenet')
    state = swin_timm_state_dict(model)
    kwargs = timm_swin_kwargs(model, num_classes=int(head['weight'].shape[0]) if head else 0)
    if head:
        state['head.fc.weight'], state['head.fc.bias'] = head['weight'].clone(), head['bias'].clone()
    _write_untied(args, state, kwargs, lambda st, kw: _check_swin(model, head, st, kw, args.atol),
                  'timm_swin_transformer_kwargs')
    print(f'wrote {args.dst}: timm SwinTransformer({", ".join(f"{k}={v!r}" for k, v in kwargs.items())}), '
          f'{sum(v.numel() for v in state.values()) / 1e6:.2f} M parameters (untied)')
    return 0


def _check_swin(model, head, state, kwargs, atol):
    """The exported timm SwinTransformer (strict load) computes the ScaleNetSwin's final features / logits."""
    import torch
    from timm.models.swin_transformer import SwinTransformer

    from mmscalenet.checkpoint import CheckpointError
    ref = SwinTransformer(**kwargs).eval()
    ref.load_state_dict(state)
    x = torch.randn(2, kwargs['in_chans'], *model.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)[-1]
        if model.out_type == 'featmap':
            ours = ours.mean((2, 3))   # timm's average pool over the last stage's normed map
        if head:
            ours = torch.nn.functional.linear(ours, head['weight'], head['bias'])
        theirs = ref(x) if head else ref.forward_head(ref.forward_features(x), pre_logits=True)
    diff = (ours - theirs).abs().max().item()
    if not diff <= atol:
        raise CheckpointError(f'the exported timm SwinTransformer differs from the ScaleNetSwin by {diff:.3g} '
                              f'(> {atol}); nothing was written')
    print(f'check: timm SwinTransformer output == ScaleNetSwin output (max abs diff {diff:.2e})')


if __name__ == '__main__':
    sys.exit(main())
