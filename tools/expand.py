#!/usr/bin/env python
"""Grow a pretrained ViT or Swin checkpoint with ScaleNet and write the grown checkpoint (ScaleNet format).

Prints the depth plan of every grown stack (which base layer each position uses) and the parameter table. The
output stores each shared tensor once plus the plans; load it with ``init_cfg=dict(type='Pretrained',
checkpoint=DST)``. The backbone family comes from --arch (deit-* / a ViT dict: ScaleNetViT; swin-* / a dict with
``depths``: ScaleNetSwin), or --backbone.

Examples:
    python tools/expand.py deit_small_patch16_224-cd65a155.pth deit-s-24l.pth --arch deit-small --depth 24
    python tools/expand.py timm:deit_base_patch16_224.fb_in1k deit-b-24l.pth --arch deit-base --depth 24 \\
        --mapping interleave --adapter lora --rank 8
    python tools/expand.py swin_tiny_patch4_window7_224.pth swin-t-s-depth.pth --arch swin-tiny --depths 2,2,18,2
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


# The adapter bottleneck of the shipped configs' grown backbones (configs/_base_/models/scalenet_backbones.py and the
# timm names of the ViT): a file grown with the defaults loads into them (tests/test_packaging.py compares).
BOTTLENECK = {'vit': 16, 'swin': 8}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 2)[2])
    p.add_argument('src', help='pretrained checkpoint: a .pth/.safetensors path, an http(s) URL or timm:NAME')
    p.add_argument('dst', help='output checkpoint (.pth or .safetensors); written only if everything succeeds, over an '
                               'existing file only with --force')
    p.add_argument('--arch', default='deit-small',
                   help='deit-tiny | deit-small | deit-base | swin-tiny | swin-small | swin-base, or a JSON dict '
                        '(default deit-small)')
    p.add_argument('--backbone', choices=['vit', 'swin'], help='the family, when --arch does not say it')
    p.add_argument('--depth', '--depths', dest='depth', required=True,
                   help='grown depth D (ViT), or the grown depth of every Swin stage, comma-separated (2,2,18,2)')
    p.add_argument('--mapping', default='cyclic',
                   help="'cyclic' (default), 'interleave', or (ViT) a comma-separated list of D base-layer indices")
    p.add_argument('--growth', choices=['shared', 'copy', 'copy_zero'], default='shared',
                   help="'shared' (default): ScaleNet. 'copy': the paper's foil, progressive growth (every position "
                        "its own copy of its layer, no adapters by default); 'copy_zero': the same with the inserted "
                        "copies' output projections zeroed (the grown model computes the pretrained one)")
    p.add_argument('--adapter', choices=['parallel', 'lora', 'none'], default=None,
                   help='per-position adjustment parameters (default: parallel adapters for --growth shared, the '
                        'shipped configs\' choice, none for the copies; '
                        'a model with them exports to ONNX or the ScaleNet format but not to a plain timm model: '
                        'the ReLU between their projections cannot be merged, LoRA can)')
    p.add_argument('--bottleneck', type=int, default=None,
                   help='parallel adapter bottleneck (default: what the shipped configs use, so that DST loads into '
                        'them: ' + ', '.join(f'{v} for a {k}' for k, v in BOTTLENECK.items()) + ')')
    p.add_argument('--rank', type=int, default=8, help='LoRA rank (default 8)')
    p.add_argument('--alpha', type=float, default=16.0, help='LoRA alpha (default 16)')
    p.add_argument('--function-preserving', action='store_true',
                   help='zero-initialised residual gates on inserted positions (grown model == base at step 0)')
    p.add_argument('--unshared', nargs='*', default=None, choices=['norm', 'rel_pos'],
                   help='tensors each position gets its own copy of (default: the family\'s: none for the ViT, '
                        'rel_pos for the Swin)')
    p.add_argument('--img-size', type=int, default=224, help='pretraining image size (default 224)')
    p.add_argument('--patch-size', type=int, default=None, help='ViT patch size (default 16)')
    p.add_argument('--no-head', action='store_true', help='do not carry the classifier head over')
    p.add_argument('--allow-nonfinite', action='store_true',
                   help='load SRC even if some of its tensors hold NaN or inf (refused by default)')
    p.add_argument('--skip-checksum', action='store_true',
                   help='do not verify the SHA-256 that ScaleNet-format files carry')
    p.add_argument('--force', action='store_true',
                   help='overwrite an existing DST (never SRC itself, never through a symbolic link)')
    return p.parse_args(argv)


def family_of_arch(arch, backbone):
    """'vit' / 'swin' from the parsed --arch (and --backbone); one line naming what was found otherwise."""
    from mmscalenet.models.swin import SWIN_ARCHS
    from mmscalenet.models.vit import ARCHS
    if isinstance(arch, dict):
        found = 'swin' if 'depths' in arch else 'vit' if 'num_layers' in arch else None
    else:
        key = arch.lower().replace('_', '-')
        found = 'swin' if key in SWIN_ARCHS or f'swin-{key}' in SWIN_ARCHS else 'vit' if key in ARCHS else None
    if backbone and found and backbone != found:
        raise SystemExit(f'error: --backbone {backbone} but --arch {arch!r} is a {found} arch')
    if not (backbone or found):
        raise SystemExit(f'error: --arch {arch!r} is neither a ViT arch ({", ".join(ARCHS)}, or a dict with '
                         f'num_layers) nor a Swin arch ({", ".join(SWIN_ARCHS)}, or a dict with depths)')
    return backbone or found


def build(args, family, arch):
    """The grown backbone the arguments describe, and its plain base (no growth, no adapters)."""
    from mmscalenet.models import ScaleNetSwin, ScaleNetViT
    bottleneck = BOTTLENECK[family] if args.bottleneck is None else args.bottleneck
    kind = args.adapter or ('parallel' if args.growth == 'shared' else 'none')
    adapter = {'parallel': dict(type='ParallelAdapter', bottleneck=bottleneck),
               'lora': dict(type='LoRA', rank=args.rank, alpha=args.alpha), 'none': None}[kind]
    try:
        depth = [int(v) for v in args.depth.split(',')]
        mapping = args.mapping if args.mapping in ('cyclic', 'interleave') else [int(v) for v in args.mapping.split(',')]
    except ValueError:
        raise SystemExit(f'error: --depth must be an integer (or comma-separated integers for a Swin) and --mapping '
                         f'cyclic, interleave or comma-separated integers; got {args.depth!r}, {args.mapping!r}')
    common = dict(function_preserving=args.function_preserving, img_size=args.img_size, growth=args.growth)
    if args.unshared is not None:
        common['unshared'] = tuple(args.unshared)
    if family == 'swin':
        if args.patch_size is not None:
            raise SystemExit('error: --patch-size is a ViT option (a Swin\'s patch size is part of its arch)')
        model = ScaleNetSwin(arch, depths=depth, mapping=mapping, adapter=adapter, **common)
        return model, ScaleNetSwin(arch, adapter=None, img_size=args.img_size, unshared=())
    if len(depth) != 1:
        raise SystemExit(f'error: a ViT has one grown depth, got --depth {args.depth}')
    patch = dict(patch_size=args.patch_size) if args.patch_size else {}
    model = ScaleNetViT(arch, depth=depth[0], mapping=mapping, adapter=adapter, **common, **patch)
    return model, ScaleNetViT(arch, adapter=None, img_size=args.img_size, **patch)


def main(argv=None):
    args = parse_args(argv)

    from mmscalenet.checkpoint import CheckpointError, backbone_state_dict, read_checkpoint, save_scalenet
    from mmscalenet.expansion import count_parameters, format_parameter_table
    from mmscalenet.tools_common import ToolError, check_destination, write_error

    try:
        check_destination(args.dst, args.force, (args.src,))
    except ToolError as err:
        raise SystemExit(f'error: {err}')
    try:
        arch = json.loads(args.arch) if args.arch.startswith('{') else args.arch
    except ValueError as err:
        raise SystemExit(f'error: --arch must be an arch name or a JSON dict ({err})')
    family = family_of_arch(arch, args.backbone)
    try:
        model, base = build(args, family, arch)
        state, _ = read_checkpoint(args.src, allow_nonfinite=args.allow_nonfinite,
                                   verify_checksum=not args.skip_checksum)
        report = model.load_pretrained(state, allow_nonfinite=args.allow_nonfinite, name=args.src)
        _, head = backbone_state_dict(state, family)
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as err:
        raise SystemExit(f'error: {err}')
    if not report['loaded']:
        raise SystemExit(f'error: nothing in {args.src} matched the model; is it a {family} checkpoint?')

    plans = model.growth_plans
    for s, plan in enumerate(plans):
        print((f'stage {s}: ' if len(plans) > 1 else '') + plan.describe()
              + ('' if model.growth == 'shared' else f'\n  (growth={model.growth}: every position stores its own copy)'))
    for s, p, j in getattr(model, 'parity_mismatches', list)():
        print(f'note: stage {s} position {p} runs block {j} at the other W-MSA / SW-MSA parity than trained')
    base_count = count_parameters(base)['unique']
    bases = [plan.base_depth for plan in plans]
    print(f'\nbase model ({bases[0] if len(bases) == 1 else tuple(bases)} layers, no adapters): {base_count:,} '
          f'parameters (backbone, without head)')
    print(format_parameter_table(count_parameters(model), reference=base_count))
    print(f'\nloaded {len(report["loaded"])} tensors ({report["layout"]} layout), {len(report["expanded"])} '
          f'per-position copies, {len(report["new"])} newly initialised, {len(report["ignored"])} ignored')
    try:
        save_scalenet(model, args.dst, head=None if args.no_head else head)
    except OSError as err:
        raise SystemExit(write_error(args.dst, err))
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
