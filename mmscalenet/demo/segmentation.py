"""Segmentation half of the embedded demo: semantic segmentation of digit scenes with the classification half's
backbones, in mmseg (CPU).

1. Write digit scenes (:mod:`mmscalenet.demo.digit_scenes`) as image / class-map PNG pairs under
   ``<work_dir>/segmentation/scenes/``: the class map of a scene is the union of its exact instance masks,
   0 = background, ``d + 1`` = digit ``d`` (:func:`~mmscalenet.demo.digit_scenes.class_map`).
2. Train ``configs/demo/digits_seg_<row>.py`` for every row of :data:`mmscalenet.demo.ROWS` that has such a config
   (base: the depth-L model; scalenet: grown to 2L with shared layers; progressive: grown to 2L with independent
   copies, the paper's foil; scratch: depth 2L from random weights), each starting from that row's checkpoint of
   the classification half, with the same recipe and seed: mmseg's ``EncoderDecoder``, the ViT's stride-4 feature
   map (``out_type='featmap'``) and a light FCN head.
3. Evaluate each on the val scenes with mmseg's ``IoUMetric`` (mIoU over the 11 classes, background included).
4. Merge ``segmentation.<row>.{mIoU,aAcc,mAcc,train_seconds,depth,backbone_params,iters,config}`` into
   ``summary.json``, write ``segmentation.md`` (table) and overlay PNGs (ground truth | prediction on the first
   ``NUM_PICTURES`` val scenes, one file per row and scene, mmseg's ``SegLocalVisualizer``), print the table.

The scenes: 32x32, ``'plain'`` style (dark noisy tinted background), one digit drawn at 28 px: the token grid (8x8)
and the digit scale of the classification half's 32 px digits. Measured before choosing them (base row, one
thread, 150-600 iterations): on 48x48 and 64x64 scenes with two to five digits (plain or cluttered), on cluttered
32x32 scenes and on plain 32x32 scenes with digits of 18-28 px, the base reached 7-17 mIoU and its pretrained
weights did no better than random ones (a linear probe of its tokens on such scenes read the digit at 10-26 %,
against 91 % on the classification digits: features learnt on centred, frame-filling digits did not carry over to
shifted or rescaled ones in this budget). On these scenes the configs' 400 iterations (10-18 s per row on one
thread) gave the base 49 mIoU against 28 from random weights (seed 0; README, "The demo and its results").

    python -m mmscalenet.demo.segmentation --work-dir work_dirs/demo
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import ROWS, merge_summary
from .downstream import (MissingBackboneError, pick_rows, prepare_config, row_entry, rows_table, select_rows,
                         train_and_test)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo')
# Scene set (module doc): cheap to write (about 2 s) and to train on (about 18 s per depth-8 row on one thread).
NUM_TRAIN, NUM_VAL = 960, 100
CANVAS, MAX_DIGITS, SIZE_RANGE, STYLE = 32, 1, (28, 28), 'plain'
SCENE_FORMAT = 1   # version stamp of the written scene folder (a folder written with other settings is rewritten)
NUM_PICTURES = 2   # val scenes drawn per row
_HINT = ' (a row needs configs/demo/digits_seg_<row>.py)'


def config_path(row: str) -> str:
    return osp.join(CONFIG_DIR, f'digits_seg_{row}.py')


def available_rows() -> List[str]:
    """The rows of ``ROWS`` that have a segmentation config (adding ``digits_seg_<row>.py`` adds the row)."""
    return [row for row, _ in ROWS if osp.isfile(config_path(row))]


def write_scenes(out_dir: str, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL, seed: int = 0,
                 canvas: int = CANVAS, overwrite: bool = False) -> Dict[str, str]:
    """Write ``img/{train,val}/NNNNNN.png`` (RGB scene) and ``ann/{train,val}/NNNNNN.png`` (uint8 class map) under
    ``out_dir``, the layout mmseg's ``BaseSegDataset`` reads; returns ``dict(root=out_dir)``. Reuses a folder
    written with the same settings (a stamp file records them) unless ``overwrite``; otherwise its ``img/`` and
    ``ann/`` are written afresh (mmseg lists whatever the folders hold, so no scene of other settings may stay)."""
    import shutil

    from PIL import Image

    from .digit_scenes import FORMAT, SPLITS, class_map, iter_scenes
    settings = dict(format=[FORMAT, SCENE_FORMAT], num_train=num_train, num_val=num_val, seed=seed, canvas=canvas,
                    max_digits=MAX_DIGITS, size_range=list(SIZE_RANGE), style=STYLE)
    stamp = osp.join(out_dir, 'scenes.json')
    if not overwrite and osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == settings:
                return dict(root=out_dir)
        os.remove(stamp)
    for sub in ('img', 'ann'):
        shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
    for split, count in zip(SPLITS, (num_train, num_val)):
        for sub in ('img', 'ann'):
            os.makedirs(osp.join(out_dir, sub, split), exist_ok=True)
        for i, (img, instances) in enumerate(iter_scenes(split, count, seed, canvas, MAX_DIGITS, SIZE_RANGE, STYLE)):
            Image.fromarray(img).save(osp.join(out_dir, 'img', split, f'{i:06d}.png'))
            Image.fromarray(class_map(instances, img.shape[:2])).save(osp.join(out_dir, 'ann', split, f'{i:06d}.png'))
    with open(stamp, 'w') as f:
        json.dump(settings, f)
    return dict(root=out_dir)


def constant_miou(scenes_root: str, split: str = 'val') -> float:
    """mIoU (%) of predicting background everywhere on ``split``, as mmseg's ``IoUMetric`` computes it: background
    IoU = its pixel share, 0 for every digit class present, classes absent from both left out (NaN)."""
    import glob

    import numpy as np
    from PIL import Image
    counts = np.zeros(256, dtype=np.int64)
    for path in glob.glob(osp.join(scenes_root, 'ann', split, '*.png')):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    total = counts.sum()
    return float(100.0 * counts[0] / total / np.count_nonzero(counts)) if total else float('nan')


def build_config(row: str, checkpoint: str, scenes_root: str, work_dir: str, seed: int,
                 max_iters: Optional[int] = None):
    """``configs/demo/digits_seg_<row>.py`` with the data paths, backbone, work dir and seed of this demo run
    (``max_iters``: :func:`~mmscalenet.demo.downstream.prepare_config`)."""
    cfg = prepare_config(config_path(row), checkpoint, osp.join(work_dir, 'segmentation', row), seed, max_iters,
                         f'digits_seg_{row}')
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = scenes_root.rstrip('/') + '/'
    return cfg


def draw_overlays(runner, out_files: Sequence[str], upscale: int = 8) -> None:
    """Predict the first val scenes with the trained model and save ground truth | prediction, coloured over the
    scene and labelled with the class names (mmseg's ``SegLocalVisualizer``), enlarged ``upscale`` times (nearest
    neighbour) to stay readable."""
    import mmcv
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = runner.model
    model.eval()
    visualizer = runner.visualizer
    visualizer.dataset_meta = runner.test_dataloader.dataset.metainfo
    samples = []
    for batch in runner.test_dataloader:
        with torch.no_grad():
            samples += model.test_step(batch)
        if len(samples) >= len(out_files):
            break
    for sample, out in zip(samples, out_files):
        image = mmcv.imrescale(mmcv.imread(sample.img_path, channel_order='rgb'), upscale, interpolation='nearest')
        drawn = SegDataSample()
        for key in ('gt_sem_seg', 'pred_sem_seg'):
            drawn.set_data({key: PixelData(data=sample.get(key).data.repeat_interleave(upscale, 1)
                                           .repeat_interleave(upscale, 2))})
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        visualizer.add_datasample(osp.basename(sample.img_path), image, drawn, draw_gt=True, draw_pred=True,
                                  show=False, out_file=out, with_labels=True)


def _segmentation_job(row: str, checkpoint: str, scenes_root: str, work_dir: str, seed: int,
                      max_iters: Optional[int], cfg_options: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Train and evaluate one segmenter, draw its overlays; returns (its summary entry, the picture files)."""
    cfg = build_config(row, checkpoint, scenes_root, work_dir, seed, max_iters)
    cfg.merge_from_dict(cfg_options)
    out = train_and_test(cfg)
    m = out['metrics']
    entry = row_entry(out, cfg, osp.relpath(config_path(row), ROOT),
                      mIoU=float(m['mIoU']), aAcc=float(m['aAcc']), mAcc=float(m['mAcc']))
    files = [osp.join(work_dir, 'segmentation', f'overlay_{row}_{i}.png') for i in range(NUM_PICTURES)]
    draw_overlays(out['runner'], files)
    return entry, files


def format_table(seg: Dict[str, Dict[str, Any]]) -> str:
    return rows_table(seg, [row for row, _ in ROWS], [(name, name, '{:.2f}'.format) for name in ('mIoU', 'mAcc',
                                                                                                 'aAcc')])


def run(work_dir: str, seed: int = 0, runs: Optional[Sequence[str]] = None, max_iters: Optional[int] = None,
        num_train: int = NUM_TRAIN, num_val: int = NUM_VAL,
        cfg_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The segmentation half; returns the ``segmentation`` entry it merged into ``<work_dir>/summary.json``.

    ``runs`` picks some rows (default: every row of ``ROWS`` with a ``configs/demo/digits_seg_<row>.py``);
    ``cfg_options`` (mmengine ``--cfg-options`` keys) change every row's config the same way.
    """
    select_rows(work_dir, _rows(), runs, 'segmentation', _HINT)
    from .jobs import run_graph
    t_start = time.perf_counter()
    done = run_graph(jobs(work_dir, seed, runs, max_iters, num_train, num_val, cfg_options,
                          after_classification=False))
    return finish(work_dir, seed, done, time.perf_counter() - t_start, runs, num_train, num_val, cfg_options)


def _rows() -> List[Tuple[str, str]]:
    """The rows of ``ROWS`` that have a segmentation config, with their checkpoint files."""
    rows = available_rows()
    return [(row, rel) for row, rel in ROWS if row in rows]


def _chosen(runs: Optional[Sequence[str]]) -> List[Tuple[str, str]]:
    return pick_rows(_rows(), runs, 'segmentation', _HINT)


def jobs(work_dir: str, seed: int = 0, runs: Optional[Sequence[str]] = None, max_iters: Optional[int] = None,
         num_train: int = NUM_TRAIN, num_val: int = NUM_VAL, cfg_options: Optional[Dict[str, Any]] = None,
         after_classification: bool = True) -> list:
    """Write the scenes, then the trainings as :func:`~mmscalenet.demo.jobs.run_graph` jobs named
    ``segmentation/<row>``, each waiting for the classification job that writes its backbone (unless
    ``after_classification`` is False: the backbones are on disk already)."""
    scenes_root = write_scenes(osp.join(work_dir, 'segmentation', 'scenes'), num_train, num_val, seed)['root']
    return [(f'segmentation/{row}', _segmentation_job, (row, osp.join(work_dir, rel), scenes_root, work_dir, seed,
                                                        max_iters, dict(cfg_options or {})),
             (f'classification/{row}',) if after_classification else ()) for row, rel in _chosen(runs)]


def finish(work_dir: str, seed: int, done: Dict[str, Any], wall_seconds: float, runs: Optional[Sequence[str]] = None,
           num_train: int = NUM_TRAIN, num_val: int = NUM_VAL,
           cfg_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``segmentation`` section of summary.json, segmentation.md and the table, from the jobs' results."""
    chosen = _chosen(runs)
    scenes_root = osp.join(work_dir, 'segmentation', 'scenes')
    seg: Dict[str, Any] = {row: done[f'segmentation/{row}'][0] for row, _ in chosen}
    pictures = [p for row, _ in chosen for p in done[f'segmentation/{row}'][1]]
    first = seg[chosen[0][0]]
    seg.update(num_train_scenes=num_train, num_val_scenes=num_val, canvas=CANVAS, seed=seed,
               constant_mIoU=round(constant_miou(scenes_root), 2),
               cfg_options=dict(cfg_options or {}), wall_seconds=round(wall_seconds, 1))
    merge_summary(work_dir, 'segmentation', seg)
    table, note = format_table(seg), verdict(seg)
    digits = f'{MAX_DIGITS} digit' if MAX_DIGITS == 1 else f'1-{MAX_DIGITS} digits'
    size = f'{SIZE_RANGE[0]} px' if SIZE_RANGE[0] == SIZE_RANGE[1] else f'{SIZE_RANGE[0]}-{SIZE_RANGE[1]} px'
    with open(osp.join(work_dir, 'segmentation.md'), 'w') as f:
        f.write('# Segmentation stand-in: digit scenes as class maps, mmseg EncoderDecoder + FCN head\n\n'
                f'{num_train} train / {num_val} val scenes of {CANVAS}x{CANVAS} ({STYLE} style, {digits} of {size}; '
                f'seed {seed}), 11 classes (background + 10 digits), {first["iters"]} iterations of batch '
                f'{first["batch_size"]} per model, CPU; mIoU / mAcc / aAcc (%) from mmseg\'s IoUMetric on the val '
                f'scenes, where predicting background everywhere scores {seg["constant_mIoU"]:.2f} mIoU. Backbones '
                f'from the classification half (base: depth L; scalenet: grown to 2L with shared weights; '
                f'progressive: grown to 2L with independent copies, the paper\'s foil; scratch: depth 2L trained '
                f'from random weights).'
                + (f' Config changes: {cfg_options}.' if cfg_options else '') + '\n\n' + table + '\n\n' + note
                + '\n\nGround truth | prediction on val scenes: '
                + ', '.join(osp.relpath(p, work_dir) for p in pictures) + '\n')
    print(table + '\n\n' + note, flush=True)
    return seg


def verdict(seg: Dict[str, Any]) -> str:
    """One line: the grown backbone's mIoU against each other row's (seed and the constant predictor named)."""
    if 'scalenet' not in seg:
        return f'(no scalenet row; a constant background prediction scores {seg["constant_mIoU"]:.2f} mIoU)'
    s = seg['scalenet']['mIoU']
    parts = [f'{"beats" if s > o else "ties" if s == o else "does NOT beat"} {row} ({s:.2f} vs {o:.2f})'
             for row, o in ((row, seg[row]['mIoU']) for row, _ in ROWS if row != 'scalenet' and row in seg)]
    return (f'ScaleNet {", ".join(parts) if parts else "is the only row"} in mIoU (seed {seg["seed"]}, one run '
            f'each; constant background prediction: {seg["constant_mIoU"]:.2f}).')


def main(argv: Optional[Sequence[str]] = None) -> None:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Segmentation half of the ScaleNet demo (digit scenes, mmseg, CPU)')
    p.add_argument('--work-dir', default='work_dirs/demo',
                   help='the demo\'s work dir, holding the classification half\'s backbones (default work_dirs/demo)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-iters', type=int, default=None,
                   help='override the training length (the cosine decay is cut or stretched to it)')
    p.add_argument('--runs', nargs='+', choices=available_rows(), default=None,
                   help='train only these backbones (default: every row with a configs/demo/digits_seg_<row>.py)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='config overrides applied to every run, as tools/train.py takes them')
    p.add_argument('--write-scenes', metavar='DIR', default=None,
                   help='only write the scene set (images + class maps) into DIR, for tools/train.py by hand')
    a = p.parse_args(argv)
    if a.write_scenes:
        print(json.dumps(write_scenes(a.write_scenes, seed=a.seed)))
        return
    try:
        run(a.work_dir, a.seed, a.runs, a.max_iters, cfg_options=a.cfg_options)
    except MissingBackboneError as err:
        raise SystemExit(str(err))


if __name__ == '__main__':
    main()
