"""Detection half of the embedded demo: Mask R-CNN on digit scenes with the classification half's backbones (CPU).

1. Generate the digit scenes (:mod:`mmscalenet.demo.digit_scenes`, COCO format) under ``<work_dir>/detection/``.
2. Train ``configs/demo/digits_det_<row>.py`` for every row of ``ROWS``: base (the depth-L model), scalenet (grown
   to 2L with shared layers), progressive (grown to 2L with independent copies, the paper's foil) and scratch (depth
   2L from random weights), each with the backbone the classification half wrote, the same recipe and seed. The
   configs define the backbones; a checkpoint that does not match its config is refused.
3. Evaluate each on the val scenes with mmdet's ``CocoMetric`` (bbox + segm).
4. Merge ``detection.<row>.{bbox_mAP,bbox_mAP_50,segm_mAP,train_seconds,backbone_params,...}`` into
   ``summary.json``, write ``detection.md`` (table) and PNGs of predictions on a few val scenes, print the table.

    python -m mmscalenet.demo.detection --work-dir work_dirs/demo
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import ROWS, merge_summary
from .digit_scenes import CLASSES, generate
from .downstream import (MissingBackboneError, pick_rows, prepare_config, row_entry, rows_table, select_rows,
                         train_and_test)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo')
RUNS = ROWS
# Scene set sizes: enough for a clear signal within the CPU budget (both trainings under 10 minutes on 2 cores).
NUM_TRAIN, NUM_VAL = 800, 150
NUM_PICTURES = 4


def build_config(run: str, checkpoint: str, scenes: Dict[str, str], work_dir: str, seed: int,
                 max_iters: Optional[int] = None):
    """``configs/demo/digits_det_<run>.py`` with the data paths, backbone, work dir and seed of this demo run
    (``max_iters``: :func:`~mmscalenet.demo.downstream.prepare_config`)."""
    cfg = prepare_config(osp.join(CONFIG_DIR, f'digits_det_{run}.py'), checkpoint, osp.join(work_dir, 'detection', run),
                         seed, max_iters, f'digits_det_{run}')
    root = scenes['root'].rstrip('/') + '/'
    for loader, split in (('train_dataloader', 'train'), ('test_dataloader', 'val')):
        ds = cfg[loader].dataset
        ds.data_root = root
        ds.ann_file = f'annotations/instances_{split}.json'
        ds.data_prefix = dict(img=f'{split}/')
    cfg.test_evaluator.ann_file = scenes['val_ann']
    return cfg


def draw_predictions(model, cfg, image_paths: Sequence[str], out_files: Sequence[str], score_thr: float = 0.3,
                     classes: Optional[Sequence[str]] = None, upscale: int = 1) -> list:
    """Run ``model`` on images and save them with boxes, labels and masks drawn (mmdet's ``DetLocalVisualizer``).

    ``upscale`` > 1 draws on an enlarged copy (nearest neighbour), so labels stay readable on small images.
    Returns the predictions (``DetDataSample`` per image, in the original image's coordinates).
    """
    import mmcv
    from mmdet.apis import inference_detector
    from mmdet.registry import VISUALIZERS
    model.cfg = cfg  # inference_detector builds its test pipeline from model.cfg
    was_training = model.training
    model.eval()
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name=f'mmscalenet_draw_{time.time_ns()}'))
    meta = dict(getattr(model, 'dataset_meta', None) or {})
    if classes is not None:
        meta['classes'] = tuple(classes)
    visualizer.dataset_meta = meta
    results = []
    for path, out in zip(image_paths, out_files):
        result = inference_detector(model, path)
        results.append(result)
        image = mmcv.imread(path, channel_order='rgb')
        if upscale > 1:
            image = mmcv.imrescale(image, upscale, interpolation='nearest')
            result = result.clone()
            inst = result.pred_instances
            inst.bboxes = inst.bboxes * upscale
            if 'masks' in inst:
                inst.masks = inst.masks.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        visualizer.add_datasample(osp.basename(path), image, data_sample=result, draw_gt=False, show=False,
                                  pred_score_thr=score_thr, out_file=out)
    model.train(was_training)
    return results


def _detection_job(run_name: str, checkpoint: str, scenes: Dict[str, str], work_dir: str, seed: int,
                   max_iters: Optional[int], cfg_options: Dict[str, Any],
                   val_images: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
    """Train and evaluate one detector, draw its predictions; returns (its summary entry, the picture files)."""
    cfg = build_config(run_name, checkpoint, scenes, work_dir, seed, max_iters)
    cfg.merge_from_dict(cfg_options)
    out = train_and_test(cfg)
    # a detector that finds nothing gets no COCO figures from mmdet (it logs "results ... empty"): 0, as found
    m = {k: float(out['metrics'].get(f'coco/{k}', 0.0)) for k in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50')}
    entry = row_entry(out, cfg, osp.relpath(osp.join(CONFIG_DIR, f'digits_det_{run_name}.py'), ROOT), **m)
    files = [osp.join(work_dir, 'detection', f'pred_{run_name}_{i}.png') for i in range(len(val_images))]
    draw_predictions(out['runner'].model, cfg, val_images, files, classes=CLASSES, upscale=4)
    return entry, files


def format_table(det: Dict[str, Dict[str, Any]]) -> str:
    return rows_table(det, [run for run, _ in RUNS], [('bbox mAP', 'bbox_mAP', '{:.3f}'.format),
                                                      ('bbox AP50', 'bbox_mAP_50', '{:.3f}'.format),
                                                      ('segm mAP', 'segm_mAP', '{:.3f}'.format)])


def run(work_dir: str, seed: int = 0, max_iters: Optional[int] = None, num_train: int = NUM_TRAIN,
        num_val: int = NUM_VAL, runs: Optional[Sequence[str]] = None,
        cfg_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The detection half; returns the ``detection`` entry it merged into ``<work_dir>/summary.json``.

    ``runs`` picks some of the rows (default: all of ``ROWS``); ``cfg_options`` (mmengine ``--cfg-options`` keys)
    change every run's config the same way, e.g. ``{'optim_wrapper.paramwise_cfg.sharing_rule': 'first'}``.
    """
    select_rows(work_dir, RUNS, runs, 'detection')   # unknown rows and missing backbones, before any work
    from .jobs import run_graph
    t_start = time.perf_counter()
    done = run_graph(jobs(work_dir, seed, max_iters, num_train, num_val, runs, cfg_options,
                          after_classification=False))
    return finish(work_dir, seed, done, time.perf_counter() - t_start, num_train, num_val, runs, cfg_options)


def _chosen(runs: Optional[Sequence[str]]) -> List[Tuple[str, str]]:
    return pick_rows(RUNS, runs, 'detection')


def jobs(work_dir: str, seed: int = 0, max_iters: Optional[int] = None, num_train: int = NUM_TRAIN,
         num_val: int = NUM_VAL, runs: Optional[Sequence[str]] = None, cfg_options: Optional[Dict[str, Any]] = None,
         after_classification: bool = True) -> list:
    """Generate the scenes, then the trainings as :func:`~mmscalenet.demo.jobs.run_graph` jobs named
    ``detection/<row>``, each waiting for the classification job that writes its backbone (unless
    ``after_classification`` is False: the backbones are on disk already)."""
    scenes = generate(osp.join(work_dir, 'detection', 'scenes'), num_train=num_train, num_val=num_val, seed=seed)
    with open(scenes['val_ann']) as f:
        val_images = [osp.join(scenes['val_img'], im['file_name']) for im in json.load(f)['images'][:NUM_PICTURES]]
    return [(f'detection/{name}', _detection_job, (name, osp.join(work_dir, rel), scenes, work_dir, seed, max_iters,
                                                   dict(cfg_options or {}), val_images),
             (f'classification/{name}',) if after_classification else ()) for name, rel in _chosen(runs)]


def finish(work_dir: str, seed: int, done: Dict[str, Any], wall_seconds: float, num_train: int = NUM_TRAIN,
           num_val: int = NUM_VAL, runs: Optional[Sequence[str]] = None,
           cfg_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``detection`` section of summary.json, detection.md and the table, from the jobs' results."""
    chosen = _chosen(runs)
    cfg_options = dict(cfg_options or {})
    det: Dict[str, Any] = {name: done[f'detection/{name}'][0] for name, _ in chosen}
    pictures: List[str] = [p for name, _ in chosen for p in done[f'detection/{name}'][1]]
    first = det[chosen[0][0]]
    det['num_train_scenes'], det['num_val_scenes'], det['seed'] = num_train, num_val, seed
    det['cfg_options'] = cfg_options
    det['wall_seconds'] = round(wall_seconds, 1)
    merge_summary(work_dir, 'detection', det)
    table = format_table(det)
    with open(osp.join(work_dir, 'detection.md'), 'w') as f:
        f.write('# Detection stand-in: Mask R-CNN on digit scenes\n\n'
                f'{num_train} train / {num_val} val scenes (seed {seed}), {first["iters"]} iterations of '
                f'batch {first["batch_size"]} per model, CPU; COCO metrics from mmdet\'s CocoMetric on the val '
                f'scenes. Backbones from the classification half (base: depth L; scalenet: grown to 2L with '
                f'shared weights; progressive: grown to 2L with independent copies, the paper\'s foil; scratch: '
                f'depth 2L trained from random weights).'
                + (f' Config changes: {cfg_options}.' if cfg_options else '') + '\n\n' + table
                + '\n\nPredictions on val scenes: ' + ', '.join(osp.relpath(p, work_dir) for p in pictures) + '\n')
    print(table)
    return det


def main(argv: Optional[Sequence[str]] = None) -> None:
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Detection half of the ScaleNet demo (digit scenes, CPU)')
    p.add_argument('--work-dir', default='work_dirs/demo',
                   help='the demo\'s work dir, holding the classification half\'s backbones (default work_dirs/demo)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-iters', type=int, default=None,
                   help='override the training length (the cosine decay is cut or stretched to it)')
    p.add_argument('--runs', nargs='+', choices=[name for name, _ in RUNS], default=None,
                   help='train only these backbones (default: all of them)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='config overrides applied to every run, as tools/train.py takes them')
    a = p.parse_args(argv)
    try:
        run(a.work_dir, a.seed, a.max_iters, runs=a.runs, cfg_options=a.cfg_options)
    except MissingBackboneError as err:
        raise SystemExit(str(err))


if __name__ == '__main__':
    main()
