#!/usr/bin/env python
"""Parameters and FLOPs of a config's backbone (mmdet's tools/analysis_tools/get_flops.py, for ScaleNet).

The backbone (``model.backbone``, or the model itself when it is a backbone) is built from the config without
loading any checkpoint and traced once by mmengine's FlopAnalyzer on a zero image of --shape. A ScaleNetViT is
printed next to its plain ViT of the same depth (no sharing, no adapters) and the base ViT it was grown from.
One multiply-add counts as one FLOP; attention's products are included; shared tensors count once in params.
Each model's trace is announced on stderr, with its time when done (a ViTDet backbone at 1024 takes tens of seconds
per model on a CPU). After ``import mmscalenet`` mmdet's own get_flops.py counts attention too.

Examples:
    python tools/analysis/get_flops.py configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py
    python tools/analysis/get_flops.py configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py \\
        --shape 1024 --out flops.json
"""
import argparse
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)  # run from a checkout without installing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Params and FLOPs of a config\'s backbone (ScaleNet next to plain ViTs)',
                                epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (classification or detection)')
    p.add_argument('--shape', type=int, nargs='+', default=None,
                   help='input size: H (square) or H W; default: the backbone\'s img_size')
    p.add_argument('--no-compare', action='store_true', help='only the config\'s backbone, not the plain ViTs')
    p.add_argument('--out', help='also write the rows as JSON to this file')
    p.add_argument('--cfg-options', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='override config keys')
    args = p.parse_args(argv)
    from mmscalenet.tools_common import finish_args
    return finish_args(p, args)


def backbone_cfg(cfg):
    """``model.backbone`` when the model has one, else the model (a bare backbone config)."""
    model = cfg.get('model', None)
    if not model:
        from mmscalenet.tools_common import ToolError
        raise ToolError('the config has no "model"')
    return model.get('backbone', None) or model


def main(argv=None):
    args = parse_args(argv)
    if args.shape is not None and (len(args.shape) not in (1, 2) or min(args.shape) < 1):
        print(f'error: --shape takes one or two positive sizes (H or H W), got {args.shape}', file=sys.stderr)
        return 1
    from mmscalenet.tools_common import format_error, load_config, prepare_or_report, user_error_types
    cfg = prepare_or_report(args.config, lambda: load_config(args.config, args.cfg_options))
    if cfg is None:
        return 1
    try:
        from mmdet.registry import MODELS
        from mmengine.registry import init_default_scope
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        bcfg = dict(backbone_cfg(cfg))
        bcfg.pop('init_cfg', None)  # FLOPs do not depend on weights: never download or read a checkpoint
        backbone = MODELS.build(bcfg)
    except user_error_types() as err:
        print(format_error(err), file=sys.stderr)
        return 1
    from mmscalenet.analysis import backbone_rows, input_channels, rows_table
    if args.shape is None:
        shape = tuple(getattr(backbone, 'img_size', (224, 224)))
    else:
        shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1)
    in_channels = input_channels(backbone)
    rows = backbone_rows(backbone, shape, in_channels, compare=not args.no_compare,
                         progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f'config: {args.config}\ninput shape: (1, {in_channels}, {shape[0]}, {shape[1]})\n')
    print(rows_table(rows))
    skipped = sorted({op for r in rows for op in r['unsupported']})
    print(f'\nOne multiply-add = one FLOP. Not counted (element-wise ops, no products): {", ".join(skipped) or "-"}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, shape=list(shape), rows=rows), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
