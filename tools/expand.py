#!/usr/bin/env python
"""Grow a pretrained ViT checkpoint with ScaleNet and write the grown checkpoint (ScaleNet format).

Prints the depth plan (which base layer each position uses) and the parameter table. The output stores each
shared tensor once plus the plan; load it with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

Examples:
    python tools/expand.py deit_small_patch16_224-cd65a155.pth deit-s-24l.pth --arch deit-small --depth 24
    python tools/expand.py timm:deit_base_patch16_224.fb_in1k deit-b-24l.pth --arch deit-base --depth 24 \\
        --mapping interleave --adapter lora --rank 8
    python tools/expand.py swin_tiny_patch4_window7_224.pth swin-t-s-depth.pth --backbone swin --arch swin-tiny \\
        --depths 2,2,18,2      # a Swin, stage by stage (--backbone swin --help for its options)
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 2)[2])
    p.add_argument('src', help='pretrained checkpoint: a .pth/.safetensors path, an http(s) URL or timm:NAME')
    p.add_argument('dst', help='output checkpoint (.pth or .safetensors); written only if everything succeeds')
    p.add_argument('--arch', default='deit-small', help='deit-tiny | deit-small | deit-base (default deit-small)')
    p.add_argument('--depth', type=int, required=True, help='grown depth D (>= the base depth)')
    p.add_argument('--mapping', default='cyclic',
                   help="'cyclic' (default), 'interleave', or a comma-separated list of D base-layer indices")
    p.add_argument('--adapter', choices=['parallel', 'lora', 'none'], default='parallel',
                   help='per-position adjustment parameters (default parallel adapters)')
    p.add_argument('--bottleneck', type=int, default=8, help='parallel adapter bottleneck (default 8)')
    p.add_argument('--rank', type=int, default=8, help='LoRA rank (default 8)')
    p.add_argument('--alpha', type=float, default=16.0, help='LoRA alpha (default 16)')
    p.add_argument('--function-preserving', action='store_true',
                   help='zero-initialised residual gates on inserted positions (grown model == base at step 0)')
    p.add_argument('--unshared', nargs='*', default=[], choices=['norm'],
                   help='tensors each position gets its own copy of (default: none, norms shared)')
    p.add_argument('--img-size', type=int, default=224, help='pretraining image size (default 224)')
    p.add_argument('--patch-size', type=int, default=16, help='patch size (default 16)')
    p.add_argument('--no-head', action='store_true', help='do not carry the classifier head over')
    p.add_argument('--allow-nonfinite', action='store_true',
                   help='load SRC even if some of its tensors hold NaN or inf (refused by default)')
    p.add_argument('--skip-checksum', action='store_true',
                   help='do not verify the SHA-256 that ScaleNet-format files carry')
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if swin_requested(argv):
        return expand_swin(argv)
    args = parse_args(argv)

    from mmscalenet.checkpoint import CheckpointError, backbone_state_dict, read_checkpoint, save_scalenet
    from mmscalenet.expansion import count_parameters, format_parameter_table
    from mmscalenet.models import ScaleNetViT
    from mmscalenet.tools_common import ToolError, check_output_path, write_error

    try:
        check_output_path(args.dst)
    except ToolError as err:
        raise SystemExit(f'error: {err}')

    mapping = args.mapping
    if mapping not in ('cyclic', 'interleave'):
        try:
            mapping = [int(v) for v in mapping.split(',')]
        except ValueError:
            raise SystemExit(f'--mapping must be cyclic, interleave or comma-separated integers, got {mapping!r}')
    adapter = {'parallel': dict(type='ParallelAdapter', bottleneck=args.bottleneck),
               'lora': dict(type='LoRA', rank=args.rank, alpha=args.alpha), 'none': None}[args.adapter]
    try:
        model = ScaleNetViT(args.arch, depth=args.depth, mapping=mapping, adapter=adapter,
                            function_preserving=args.function_preserving, unshared=tuple(args.unshared),
                            img_size=args.img_size, patch_size=args.patch_size)
        state, _ = read_checkpoint(args.src, allow_nonfinite=args.allow_nonfinite,
                                   verify_checksum=not args.skip_checksum)
        report = model.load_pretrained(state, allow_nonfinite=args.allow_nonfinite, name=args.src)
        _, head = backbone_state_dict(state)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as err:
        raise SystemExit(f'error: {err}')
    if not report['loaded']:
        raise SystemExit(f'error: nothing in {args.src} matched the model; is it a ViT checkpoint?')

    print(model.plan.describe())
    base = ScaleNetViT(args.arch, adapter=None, img_size=args.img_size, patch_size=args.patch_size)
    base_count = count_parameters(base)['unique']
    print(f'\nbase model ({model.plan.base_depth} layers, no adapters): {base_count:,} parameters '
          f'(backbone, without head)')
    print(format_parameter_table(count_parameters(model), reference=base_count))
    print(f'\nloaded {len(report["loaded"])} tensors, {len(report["expanded"])} per-position copies, '
          f'{len(report["new"])} newly initialised, {len(report["ignored"])} ignored')
    try:
        save_scalenet(model, args.dst, head=None if args.no_head else head)
    except OSError as err:
        raise SystemExit(write_error(args.dst, err))
    print(f'wrote {args.dst}')
    return 0


# ---- ScaleNetSwin: --backbone swin (or --arch swin-*) --------------------------------------------------------------
def swin_requested(argv):
    """``--backbone swin`` or a Swin ``--arch`` on the command line."""
    for i, a in enumerate(argv):
        value = a.split('=', 1)[1] if '=' in a else (argv[i + 1] if i + 1 < len(argv) else '')
        if a.split('=', 1)[0] == '--backbone' and value == 'swin':
            return True
        if a.split('=', 1)[0] == '--arch' and value.lower().startswith(('swin', '{')):
            return True
    return False


def parse_swin_args(argv):
    p = argparse.ArgumentParser(prog='expand.py --backbone swin',
                                description='Grow a pretrained Swin checkpoint (timm, Microsoft, mmdet / mmpretrain '
                                            'layout) stage by stage with ScaleNet; writes the ScaleNet-Swin format.')
    p.add_argument('src', help='pretrained Swin checkpoint: a .pth/.safetensors path, an http(s) URL or timm:NAME')
    p.add_argument('dst', help='output checkpoint (.pth or .safetensors); written only if everything succeeds')
    p.add_argument('--backbone', choices=['swin'], default='swin')
    p.add_argument('--arch', default='swin-tiny',
                   help='swin-tiny | swin-small | swin-base, or a JSON dict(embed_dims, depths, num_heads, ...)')
    p.add_argument('--depths', required=True, help='grown depth of every stage, comma-separated (e.g. 2,2,18,2)')
    p.add_argument('--mapping', default='cyclic', choices=['cyclic', 'interleave'], help='every stage (default cyclic)')
    p.add_argument('--adapter', choices=['parallel', 'lora', 'none'], default='parallel')
    p.add_argument('--bottleneck', type=int, default=8, help='parallel adapter bottleneck (default 8)')
    p.add_argument('--rank', type=int, default=8, help='LoRA rank (default 8)')
    p.add_argument('--alpha', type=float, default=16.0, help='LoRA alpha (default 16)')
    p.add_argument('--function-preserving', action='store_true')
    p.add_argument('--unshared', nargs='*', default=['rel_pos'], choices=['norm', 'rel_pos'],
                   help='per-position tensors (default rel_pos: own relative-position bias tables)')
    p.add_argument('--img-size', type=int, default=224, help='pretraining image size (default 224)')
    p.add_argument('--no-head', action='store_true', help='do not carry the classifier head over')
    p.add_argument('--allow-nonfinite', action='store_true')
    p.add_argument('--skip-checksum', action='store_true')
    return p.parse_args(argv)


def expand_swin(argv):
    """tools/expand.py for Swin: print the stage plans and parameters, write a ScaleNet-Swin checkpoint."""
    import json

    args = parse_swin_args(argv)
    from mmscalenet.checkpoint import CheckpointError, resolve_checkpoint, split_checkpoint
    from mmscalenet.expansion import count_parameters, format_parameter_table
    from mmscalenet.models.swin import ScaleNetSwin
    from mmscalenet.swin_checkpoint import save_swin
    from mmscalenet.tools_common import ToolError, check_output_path, write_error
    try:
        check_output_path(args.dst)
    except ToolError as err:
        raise SystemExit(f'error: {err}')
    try:
        arch = json.loads(args.arch) if args.arch.startswith('{') else args.arch
        depths = [int(v) for v in args.depths.split(',')]
    except ValueError as err:
        raise SystemExit(f'error: --arch must be a Swin name or a JSON dict and --depths comma-separated integers '
                         f'({err})')
    adapter = {'parallel': dict(type='ParallelAdapter', bottleneck=args.bottleneck),
               'lora': dict(type='LoRA', rank=args.rank, alpha=args.alpha), 'none': None}[args.adapter]
    try:
        model = ScaleNetSwin(arch, depths=depths, mapping=args.mapping, adapter=adapter,
                             function_preserving=args.function_preserving, unshared=tuple(args.unshared),
                             img_size=args.img_size)
        obj = resolve_checkpoint(args.src)
        report = model.load_pretrained(obj, allow_nonfinite=args.allow_nonfinite,
                                       verify_checksum=not args.skip_checksum, name=args.src)
        state = split_checkpoint(obj)[0]
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as err:
        raise SystemExit(f'error: {err}')
    head = {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.')}
    for s, plan in enumerate(model.plans):
        print(f'stage {s}: ' + plan.describe())
    for s, p, j in model.parity_mismatches():
        print(f'note: stage {s} position {p} runs block {j} at the other W-MSA / SW-MSA parity than trained')
    base = ScaleNetSwin(arch, adapter=None, img_size=args.img_size, unshared=())
    base_count = count_parameters(base)['unique']
    print(f'\nbase model (depths {tuple(p.base_depth for p in model.plans)}, no adapters): {base_count:,} '
          f'parameters (backbone, without head)')
    print(format_parameter_table(count_parameters(model), reference=base_count))
    print(f'\nloaded {len(report["loaded"])} tensors ({report["layout"]} layout), {len(report["expanded"])} '
          f'per-position copies, {len(report["new"])} newly initialised, {len(report["ignored"])} ignored')
    try:
        save_swin(model, args.dst, head=None if args.no_head else head)
    except OSError as err:
        raise SystemExit(write_error(args.dst, err))
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
