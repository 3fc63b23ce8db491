#!/usr/bin/env python
"""The embedded ScaleNet demo (what `make demo` runs): CPU only, no downloads.

1. Classification: a small ViT of depth L is trained on scikit-learn's handwritten digits ("pretrained"), grown to
   2L with ScaleNet (shared weights + adapters) and trained for a third of the epochs, against the paper's foil
   (progressive growth: 2L independent copies of the L layers, same epochs) and an ordinary (untied, no-adapter) ViT
   of depth 2L trained from scratch for the full epochs.
2. Detection: scenes of several digits (COCO format, boxes + masks); a small Mask R-CNN is trained with the depth-L,
   the ScaleNet 2L, the progressive 2L and the scratch 2L backbones from step 1 and evaluated with mmdet's
   CocoMetric.
3. Segmentation: 32x32 one-digit scenes as class maps (background + 10 digits); mmseg's EncoderDecoder with a light
   FCN head is trained with the same backbones (every row of mmscalenet.demo.ROWS that has a
   configs/demo/digits_seg_<row>.py) and evaluated with mmseg's IoUMetric (mIoU).

The trainings run two at a time (MMSCALENET_JOBS), each as soon as what it needs exists: a detector or segmenter
starts when the classification run that writes its backbone has ended, so the steps overlap.

Writes summary.json, classification.md, detection.md, segmentation.md and PNGs (accuracy curves, predictions,
segmentation overlays) into --work-dir.
With --seeds, runs the whole demo once per seed (into <work-dir>/seed_<k>/) and writes seeds.json / seeds.md with
the mean and spread of every figure. A one-seed run says where its figures fall against the spread recorded in
docs/demo_seeds.json (three seeds of the demo's recipe on the project's 2-core machine; its "command" says what
made it).

One seed gives one result on a given machine and thread count: the trainings run on MMSCALENET_THREADS torch
threads (default 1), data order and augmentation come from the seed, and nothing depends on timing.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
REFERENCE = osp.join(ROOT, 'docs', 'demo_seeds.json')
# (section, run, metric) of the figures compared across seeds
# (a row a step has not run has no figure: left out of the spread and of the comparison with the reference)
ROWS = ('base', 'scalenet', 'progressive', 'scratch')
FIGURES = [('classification', run, 'top1') for run in ROWS] + [
    ('detection', run, metric) for run in ROWS for metric in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP')] + [
    ('segmentation', run, 'mIoU') for run in ROWS]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo', help='output folder (default work_dirs/demo)')
    p.add_argument('--only', choices=['classification', 'detection', 'segmentation'],
                   help='run one step (detection and segmentation need the classification step\'s backbones in '
                        '--work-dir)')
    p.add_argument('--seed', type=int, default=0, help='the seed of a one-seed run (default 0)')
    p.add_argument('--seeds', type=int, nargs='+', default=None,
                   help='run the whole demo once per seed and report mean and spread (e.g. --seeds 0 1 2)')
    return p.parse_args(argv)


def run_once(work_dir: str, seed: int, only=None) -> dict:
    """Every step (or one) with one seed; returns the merged summary.json."""
    from mmscalenet.demo import classification, detection, segmentation
    os.makedirs(work_dir, exist_ok=True)
    if only == 'classification':
        classification.run(work_dir, seed=seed)
    elif only == 'detection':
        detection.run(work_dir, seed=seed)
    elif only == 'segmentation':
        segmentation.run(work_dir, seed=seed)
    else:
        from mmscalenet.demo.jobs import run_graph
        print(f'=== demo (seed {seed}): digits classification (base L, ScaleNet 2L, progressive 2L, scratch 2L), '
              f'then Mask R-CNN on digit scenes and an mmseg segmenter on one-digit scenes with each backbone, two '
              f'trainings at a time ===', flush=True)
        t0 = time.perf_counter()
        # the long detectors before the short segmenters among the jobs ready at a time
        done = run_graph(classification.jobs(work_dir, seed) + detection.jobs(work_dir, seed)
                         + segmentation.jobs(work_dir, seed))
        wall = time.perf_counter() - t0
        classification.finish(work_dir, seed, done, wall)
        detection.finish(work_dir, seed, done, wall)
        segmentation.finish(work_dir, seed, done, wall)
    from mmscalenet.demo import SUMMARY
    with open(osp.join(work_dir, SUMMARY)) as f:
        return json.load(f)


def figure(summary: dict, key) -> float:
    section, run, metric = key
    value = summary.get(section, {}).get(run, {}).get(metric)
    return float(value) if value is not None else float('nan')


def spread(summaries: dict) -> dict:
    """``{'section/run/metric': {'values': {seed: v}, 'mean': m, 'std': s, 'min': .., 'max': ..}}`` over the seeds."""
    out = {}
    for key in FIGURES:
        values = {seed: figure(s, key) for seed, s in summaries.items()}
        finite = [v for v in values.values() if v == v]
        if not finite:
            continue
        out['/'.join(key)] = dict(values=values, mean=statistics.fmean(finite),
                                  std=statistics.stdev(finite) if len(finite) > 1 else 0.0,
                                  min=min(finite), max=max(finite))
    return out


def spread_table(stats: dict, seeds) -> str:
    lines = ['| figure | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean | std |',
             '| --- | ' + ' | '.join('---:' for _ in seeds) + ' | ---: | ---: |']
    for name, st in stats.items():
        lines.append(f'| {name} | ' + ' | '.join(f'{st["values"][s]:.3f}' for s in seeds)
                     + f' | {st["mean"]:.3f} | {st["std"]:.3f} |')
    return '\n'.join(lines)


def against_reference(summary: dict, reference_path: str = REFERENCE) -> str:
    """Where a one-seed run's figures fall against the recorded spread (mean, std, min..max over seeds)."""
    if not osp.isfile(reference_path):
        return f'(no {osp.relpath(reference_path, ROOT)} to compare with: run tools/demo.py --seeds 0 1 2)'
    with open(reference_path) as f:
        ref = json.load(f)
    lines = [f'Against {osp.relpath(reference_path, ROOT)} (seeds {ref["seeds"]}, {ref["machine"]}):']
    for key in FIGURES:
        name = '/'.join(key)
        st, value = ref['stats'].get(name), figure(summary, key)
        if st is None or value != value:
            continue
        where = 'inside' if st['min'] <= value <= st['max'] else 'OUTSIDE'
        lines.append(f'  {name}: {value:.3f}, {where} the seeds\' range {st["min"]:.3f}..{st["max"]:.3f} '
                     f'(mean {st["mean"]:.3f} +- {st["std"]:.3f})')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    if args.seeds:
        if args.only:
            raise SystemExit('--seeds runs the whole demo; leave --only out')
        import platform
        summaries = {seed: run_once(osp.join(args.work_dir, f'seed_{seed}'), seed) for seed in args.seeds}
        stats = spread(summaries)
        import torch
        result = dict(seeds=list(args.seeds), stats=stats, wall_seconds=round(time.time() - t0),
                      machine=f'{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch '
                              f'{torch.__version__}, {os.environ.get("MMSCALENET_THREADS", "1")} thread(s)',
                      command='python tools/demo.py --seeds ' + ' '.join(map(str, args.seeds)))
        with open(osp.join(args.work_dir, 'seeds.json'), 'w') as f:
            json.dump(result, f, indent=2)
        table = spread_table(stats, args.seeds)
        with open(osp.join(args.work_dir, 'seeds.md'), 'w') as f:
            f.write(f'# Demo over seeds {args.seeds}\n\n`{result["command"]}` ({result["machine"]}, '
                    f'{result["wall_seconds"]} s)\n\n{table}\n')
        print(f'\n=== demo over seeds {args.seeds} finished in {time.time() - t0:.0f} s ===\n{table}')
        return result
    summary = run_once(args.work_dir, args.seed, args.only)
    print(f'\n=== demo finished in {time.time() - t0:.0f} s; results in {args.work_dir} ===')
    for name in ('classification.md', 'detection.md', 'segmentation.md'):
        path = osp.join(args.work_dir, name)
        if osp.exists(path):
            print(open(path).read())
    print(against_reference(summary))
    return summary


if __name__ == '__main__':
    main()
