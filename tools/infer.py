#!/usr/bin/env python
"""Detect objects in an image with a trained detector and save the image with boxes, labels and masks drawn.

Uses mmdet's ``init_detector`` / ``inference_detector`` and ``DetLocalVisualizer``; class names come from the
checkpoint (``meta.dataset_meta``, written by training) or, failing that, from the config's dataset metainfo.

Examples:
    python tools/infer.py configs/demo/digits_det_scalenet.py work_dirs/demo/detection/scalenet/iter_250.pth \\
        work_dirs/demo/detection/scenes/val/000000.png --out pred.png
    python tools/infer.py configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py ckpt.pth demo.jpg \\
        --out demo_pred.png --score-thr 0.5 --device cuda:0
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from train import _DictAction  # noqa: E402  (tools/train.py: mmengine's DictAction, imported lazily)

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Draw a detector\'s boxes and masks on an image (mmscalenet / mmdet)',
                                epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='detector config file')
    p.add_argument('checkpoint', help='trained detector checkpoint (.pth written by tools/train.py)')
    p.add_argument('image', help='input image file')
    p.add_argument('--out', required=True, help='output image file (.png / .jpg)')
    p.add_argument('--score-thr', type=float, default=0.3, help='draw detections with at least this score')
    p.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    p.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                   help='override config keys, as for tools/train.py and tools/test.py (the model must be the one '
                        'the checkpoint was trained as)')
    return p.parse_args(argv)


def check_args(args):
    """Clear errors for paths and values, before any model is built."""
    for what, path in (('config', args.config), ('checkpoint', args.checkpoint), ('image', args.image)):
        if not osp.isfile(path):
            return f'{what} file not found: {path}'
    if not args.image.lower().endswith(IMAGE_EXTS):
        return f'unsupported image type {args.image!r}: use one of {", ".join(IMAGE_EXTS)}'
    if not args.out.lower().endswith(IMAGE_EXTS):
        return f'--out must be an image file name ({", ".join(IMAGE_EXTS)}), got {args.out!r}'
    if not 0.0 <= args.score_thr <= 1.0:
        return f'--score-thr must be in [0, 1], got {args.score_thr}'
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            return f'--device {args.device} requested but CUDA is not available (use --device cpu)'
    return None


def main(argv=None):
    args = parse_args(argv)
    error = check_args(args)
    if error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    import mmcv
    import mmscalenet  # noqa: F401  (registers the ScaleNet modules)
    from mmdet.apis import init_detector

    from mmscalenet.demo.detection import draw_predictions
    try:
        img = mmcv.imread(args.image)
    except Exception as err:  # noqa: BLE001  (any decoder error: one clear line)
        print(f'error: cannot read image {args.image}: {err}', file=sys.stderr)
        return 1
    if img is None:
        print(f'error: cannot read image {args.image}', file=sys.stderr)
        return 1
    from mmscalenet.tools_common import ToolError, load_config
    try:
        cfg = load_config(args.config, args.cfg_options)
    except ToolError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    try:
        model = init_detector(cfg, args.checkpoint, device=args.device)
    except (KeyError, ValueError, RuntimeError, OSError) as err:
        print(f'error: cannot build the detector from {args.config} with {args.checkpoint}: '
              f'{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}', file=sys.stderr)
        return 1
    classes = (model.dataset_meta or {}).get('classes')
    if not classes:
        metainfo = model.cfg.get('test_dataloader', {}).get('dataset', {}).get('metainfo', {}) or {}
        classes = metainfo.get('classes')
    if classes:
        model.dataset_meta = dict(model.dataset_meta or {}, classes=tuple(classes))
    pred = draw_predictions(model, model.cfg, [args.image], [args.out], score_thr=args.score_thr)[0].pred_instances
    keep = pred.scores >= args.score_thr
    labels = pred.labels[keep].tolist()
    names = [classes[i] if classes and i < len(classes) else str(i) for i in labels]
    found = ', '.join(f'{n} {s:.2f}' for n, s in zip(names, pred.scores[keep].tolist())) or 'nothing'
    print(f'{len(labels)} detection(s) with score >= {args.score_thr}: {found}')
    print(f'saved {osp.abspath(args.out)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
