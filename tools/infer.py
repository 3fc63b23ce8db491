#!/usr/bin/env python
"""Run a trained model on images: detectors draw boxes and masks, segmentors colour every pixel by its class,
classifiers report (and draw) top-k classes.

Detection configs use mmdet's ``init_detector`` / ``inference_detector`` and ``DetLocalVisualizer``; class names come
from the checkpoint (``meta.dataset_meta``, written by training) or, failing that, from the config's dataset
metainfo; IMAGE may be a folder, drawn into --out-dir under the images' own names. Classification configs
(``ScaleNetClassifier``) use ``mmscalenet.apis.ImageClassificationInferencer``: IMAGE may be a file or a folder; the
top-k classes are printed (ImageNet's WordNet ids as words), --out writes them as JSON and --show-dir draws them.
Segmentation configs (``default_scope='mmseg'``) use mmseg's ``init_model`` / ``inference_model``: --out gets the image
with the coloured class map overlaid, and ``<out>_mask.png`` beside it the coloured class map alone.

Examples:
    python tools/infer.py configs/demo/digits_det_scalenet.py work_dirs/demo/detection/scalenet/iter_250.pth \\
        work_dirs/demo/detection/scenes/val/000000.png --out pred.png
    python tools/infer.py configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py ckpt.pth demo.jpg \\
        --out demo_pred.png --score-thr 0.5 --device cuda:0
    python tools/infer.py configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py ckpt.pth photos/ \\
        --out-dir photos_pred/
    python tools/infer.py configs/ade20k/upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512.py \\
        work_dirs/upernet_scalenet-deit-s-24_mln_8xb2-160k_ade20k-512x512/iter_160000.pth room.jpg --out room_seg.png
    python tools/infer.py configs/imagenet/scalenet_deit-s-24l_8xb128-100e_in1k.py epoch_100.pth photos/ \\
        --topk 5 --out preds.json --show-dir photos_drawn/
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Run a detector, segmentor or classifier on images (mmscalenet configs)',
                                epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (a detector, a segmentor or a classifier)')
    p.add_argument('checkpoint', help='trained checkpoint (.pth written by tools/train.py)')
    p.add_argument('image', help='input image file, or a folder of images (classification, detection)')
    p.add_argument('--out', help='detection / segmentation: the output image file (.png / .jpg) for one IMAGE; '
                                 'classification: JSON file for the top-k predictions (optional)')
    p.add_argument('--out-dir', help='detection: folder for the drawn images, one per input image under its own '
                                     'name (needed when IMAGE is a folder)')
    p.add_argument('--score-thr', type=float, default=0.3, help='draw detections with at least this score')
    p.add_argument('--topk', type=int, default=5, help='classification: number of classes reported per image')
    p.add_argument('--show-dir', help='classification: folder for the images drawn with their top-k classes')
    p.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    p.add_argument('--force', action='store_true', help='overwrite an existing --out file (or files in --out-dir; '
                                                        'never an input, never through a symbolic link)')
    p.add_argument('--cfg-options', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='override config keys, as for tools/train.py and tools/test.py (the model must be the one '
                        'the checkpoint was trained as)')
    args = p.parse_args(argv)
    from mmscalenet.tools_common import finish_args
    return finish_args(p, args)


def is_classification_config(path: str) -> bool:
    """Whether the config's model is a ``ScaleNetClassifier`` (read without importing OpenMMLab's models)."""
    from mmengine.config import Config

    from mmscalenet.tools_common import is_classifier   # registers mmscalenet (mmscalenet:: bases) too
    return is_classifier(Config.fromfile(path))


def is_segmentation_config(path: str) -> bool:
    """Whether the config is an mmseg one (its default scope), e.g. configs/ade20k/."""
    from mmengine.config import Config
    return Config.fromfile(path).get('default_scope', None) == 'mmseg'


def segment(args):
    """The class of every pixel: the image with the coloured map overlaid (--out) and the map alone beside it."""
    import mmcv
    import numpy as np
    from mmseg.apis import inference_model, init_model

    from mmscalenet.checkpoint import safe_mmengine_io
    from mmscalenet.tools_common import ToolError, load_config
    try:
        cfg = load_config(args.config, args.cfg_options)
        with safe_mmengine_io():   # mmengine loads the checkpoint with weights_only=True
            model = init_model(cfg, args.checkpoint, device=args.device)
        img = mmcv.imread(args.image)
        if img is None:
            raise ToolError(f'cannot read image {args.image}')
        pred = inference_model(model, img).pred_sem_seg.data[0].cpu().numpy()
    except (ToolError, KeyError, ValueError, RuntimeError, OSError) as err:
        print(f'error: cannot segment {args.image} with {args.config} and {args.checkpoint}: '
              f'{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}', file=sys.stderr)
        return 1
    meta = model.dataset_meta or {}
    classes, palette = meta.get('classes') or (), meta.get('palette')
    if not palette:   # a fixed, seeded palette where the checkpoint and config carry none
        palette = np.random.default_rng(0).integers(0, 256, (max(int(pred.max()) + 1, len(classes)), 3)).tolist()
    colours = np.asarray(palette, dtype=np.uint8)[np.clip(pred, 0, len(palette) - 1)]   # RGB
    overlay = (0.5 * img + 0.5 * colours[..., ::-1]).astype(np.uint8)                   # mmcv images are BGR
    root, ext = osp.splitext(args.out)
    mask_path = f'{root}_mask{ext}'
    mmcv.imwrite(overlay, args.out)
    mmcv.imwrite(colours[..., ::-1], mask_path)
    ids, counts = np.unique(pred, return_counts=True)
    top = sorted(zip(counts.tolist(), ids.tolist()), reverse=True)[:5]
    names = ', '.join(f'{classes[i] if i < len(classes) else i} {c / pred.size:.0%}' for c, i in top)
    print(f'{len(ids)} class(es) in {pred.shape[1]}x{pred.shape[0]} pixels; largest: {names}')
    print(f'saved {osp.abspath(args.out)} and {osp.abspath(mask_path)}')
    return 0


def check_args(args):
    """Clear errors for paths and values, before any model is built."""
    for what, path in (('config', args.config), ('checkpoint', args.checkpoint)):
        if not osp.isfile(path):
            return f'{what} file not found: {path}'
    if args.classification:
        if not osp.exists(args.image):
            return f'image file or folder not found: {args.image}'
        if args.out and not args.out.lower().endswith('.json'):
            return f'--out must be a .json file for a classification config, got {args.out!r}'
        if args.out_dir:
            return '--out-dir is for detection; a classifier draws its images into --show-dir'
        if args.topk < 1:
            return f'--topk must be at least 1, got {args.topk}'
        return _check_device(args.device)
    error = _detection_inputs(args)
    if error:
        return error
    if not 0.0 <= args.score_thr <= 1.0:
        return f'--score-thr must be in [0, 1], got {args.score_thr}'
    return _check_device(args.device)


def _detection_inputs(args):
    """``args.pairs``: (image, drawn image) for detection / segmentation, from IMAGE (a file or, for a detector, a
    folder) and --out / --out-dir; an error line, or None."""
    if osp.isdir(args.image):
        if args.segmentation:
            return f'{args.image} is a folder; a segmentation config takes one image file'
        if not args.out_dir or args.out:
            return f'{args.image} is a folder: give --out-dir DIR (one drawn image per input), not --out'
        images = sorted(n for n in os.listdir(args.image) if n.lower().endswith(IMAGE_EXTS))
        if not images:
            return f'no image file ({", ".join(IMAGE_EXTS)}) in {args.image}'
        args.pairs = [(osp.join(args.image, n), osp.join(args.out_dir, n)) for n in images]
        return None
    if not osp.isfile(args.image):
        return f'image file not found: {args.image}'
    if not args.image.lower().endswith(IMAGE_EXTS):
        return f'unsupported image type {args.image!r}: use one of {", ".join(IMAGE_EXTS)}'
    if args.out_dir and (args.out or args.segmentation):
        return '--out-dir is for a detector\'s images; give either --out FILE or --out-dir DIR'
    if not (args.out or args.out_dir):
        return '--out (the output image file) is required for a detection or segmentation config'
    out = args.out or osp.join(args.out_dir, osp.basename(args.image))
    if not out.lower().endswith(IMAGE_EXTS):
        return f'--out must be an image file name ({", ".join(IMAGE_EXTS)}), got {out!r}'
    args.pairs = [(args.image, out)]
    return None


def check_outputs(args):
    """--out and --show-dir writable (and --out new unless --force) before the model is built."""
    from mmscalenet.run_checks import check_output_dir
    from mmscalenet.tools_common import ToolError, check_destination
    try:
        outputs = [out for _, out in getattr(args, 'pairs', [])] or ([args.out] if args.out else [])
        if getattr(args, 'segmentation', False) and args.out:   # the class map alone, beside --out
            outputs.append('{0}_mask{1}'.format(*osp.splitext(args.out)))
        inputs = (args.config, args.checkpoint, *[image for image, _ in getattr(args, 'pairs', [])], args.image)
        for out in outputs:
            check_destination(out, args.force, inputs, what='--out' if out == args.out else '--out-dir:')
        for flag in ('show_dir', 'out_dir'):
            if getattr(args, flag, None):
                check_output_dir(getattr(args, flag), f'--{flag.replace("_", "-")}')
    except ToolError as err:
        return str(err)
    return None


def _check_device(device):
    if device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            return f'--device {device} requested but CUDA is not available (use --device cpu)'
    return None


def classify(args):
    """Top-k classes of every image (a file or a folder), printed; --out JSON, --show-dir drawn images."""
    from mmscalenet.apis import ImageClassificationInferencer
    from mmscalenet.checkpoint import CheckpointError
    from mmscalenet.tools_common import ToolError, load_config
    try:
        cfg = load_config(args.config, args.cfg_options)   # --cfg-options apply to classifiers too
        inferencer = ImageClassificationInferencer(cfg, args.checkpoint, device=args.device)
        result = inferencer(args.image, topk=args.topk, pred_out_file=args.out or '',
                            img_out_dir=args.show_dir or '')
    except RuntimeError as err:   # torch's load_state_dict: one "size mismatch" line per tensor
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        mismatches = [line for line in lines if 'size mismatch' in line] or lines[:1] or [type(err).__name__]
        print(f'error: {args.checkpoint} does not fit the model of {args.config}: {mismatches[0]}'
              f'{f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""}; build the model the '
              f'checkpoint was trained as (--cfg-options KEY=VALUE)', file=sys.stderr)
        return 1
    except (ToolError, CheckpointError, FileNotFoundError, ValueError, TypeError, KeyError) as err:
        print(f'error: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}',
              file=sys.stderr)
        return 1
    for rec in result['predictions']:
        top = ', '.join(f'{t["class"]} {t["score"]:.3f}' for t in rec['topk'])
        print(f'{rec["img_path"]}: {top}')
    if args.out:
        print(f'saved {osp.abspath(args.out)}')
    if args.show_dir:
        print(f'drew {len(result["predictions"])} image(s) into {osp.abspath(args.show_dir)}')
    return 0


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        print(f'error: config file not found: {args.config}', file=sys.stderr)
        return 1
    try:
        args.classification = is_classification_config(args.config)
        args.segmentation = is_segmentation_config(args.config)
    except Exception as err:  # noqa: BLE001  (any config error: one line)
        print(f'error: cannot load the config {args.config}: {err}', file=sys.stderr)
        return 1
    error = check_args(args) or check_outputs(args)
    if error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    if args.classification:
        return classify(args)
    if args.segmentation:
        return segment(args)
    import mmcv
    import mmscalenet  # noqa: F401  (registers the ScaleNet modules)
    from mmdet.apis import init_detector

    from mmscalenet.demo.detection import draw_predictions
    for image, _ in args.pairs:   # every image readable before the model is built
        try:
            img = mmcv.imread(image)
        except Exception as err:  # noqa: BLE001  (any decoder error: one clear line)
            print(f'error: cannot read image {image}: {err}', file=sys.stderr)
            return 1
        if img is None:
            print(f'error: cannot read image {image}', file=sys.stderr)
            return 1
    from mmscalenet.tools_common import ToolError, load_config
    try:
        cfg = load_config(args.config, args.cfg_options)
    except ToolError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    from mmscalenet.checkpoint import safe_mmengine_io
    try:
        with safe_mmengine_io():   # mmengine loads the checkpoint with weights_only=True
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
    results = draw_predictions(model, model.cfg, [i for i, _ in args.pairs], [o for _, o in args.pairs],
                               score_thr=args.score_thr)
    for (image, out), result in zip(args.pairs, results):
        pred = result.pred_instances
        keep = pred.scores >= args.score_thr
        labels = pred.labels[keep].tolist()
        names = [classes[i] if classes and i < len(classes) else str(i) for i in labels]
        found = ', '.join(f'{n} {s:.2f}' for n, s in zip(names, pred.scores[keep].tolist())) or 'nothing'
        prefix = f'{image}: ' if len(args.pairs) > 1 else ''
        print(f'{prefix}{len(labels)} detection(s) with score >= {args.score_thr}: {found}')
        print(f'saved {osp.abspath(out)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
