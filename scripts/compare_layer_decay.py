#!/usr/bin/env python
"""Compare the layer-decay sharing rules on the detection stand-in (the table in docs/layer_decay.md).

For each seed, the ScaleNet detector of the demo is trained with every ``sharing_rule`` of
``ScaleNetLayerDecayOptimizerConstructor`` (everything else as ``configs/demo/digits_det_scalenet.py``), starting
from the classification backbones that ``tools/demo.py --seeds ...`` wrote for that seed. Writes
``<out>/layer_decay.json`` and ``<out>/layer_decay.md`` and prints the table.

    python tools/demo.py --seeds 0 1 2 --work-dir work_dirs/seeds
    python scripts/compare_layer_decay.py --demo-dir work_dirs/seeds --seeds 0 1 2
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
RULES = ('base', 'deepest', 'first')
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP')


def one_run(work: str, seed: int, rule: str) -> dict:
    """The ScaleNet detector of the demo with one sharing rule; its bbox / segm figures."""
    from mmscalenet.demo.detection import run
    det = run(work, seed=seed, runs=['scalenet'], cfg_options={'optim_wrapper.paramwise_cfg.sharing_rule': rule})
    return {m: det['scalenet'][m] for m in METRICS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-dir', default='work_dirs/seeds', help='the --work-dir of tools/demo.py --seeds')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--rules', nargs='+', choices=RULES, default=list(RULES))
    p.add_argument('--out', default='work_dirs/layer_decay', help='output folder')
    args = p.parse_args(argv)
    from mmscalenet.demo import SCALENET_BACKBONE
    from mmscalenet.demo.jobs import run_jobs
    jobs = []
    for seed in args.seeds:
        source = osp.abspath(osp.join(args.demo_dir, f'seed_{seed}', 'classification'))
        if not osp.isfile(osp.join(source, osp.basename(SCALENET_BACKBONE))):
            raise SystemExit(f'{source} has no ScaleNet backbone: run tools/demo.py --seeds ... --work-dir '
                             f'{args.demo_dir} first')
        for rule in args.rules:
            work = osp.join(args.out, f'{rule}_seed{seed}')
            os.makedirs(work, exist_ok=True)
            link = osp.join(work, 'classification')
            if not osp.exists(link):
                os.symlink(source, link)
            jobs.append((f'{rule}/{seed}', one_run, (work, seed, rule)))
    done = run_jobs(jobs)       # two at a time on 2 cores (MMSCALENET_JOBS), each single-threaded
    results = {rule: {seed: done[f'{rule}/{seed}'] for seed in args.seeds} for rule in args.rules}
    lines = ['| sharing_rule | ' + ' | '.join(f'{m} (seeds {", ".join(map(str, args.seeds))})' for m in METRICS)
             + ' | mean ' + ' | mean '.join(METRICS) + ' |',
             '| --- |' + ' --- |' * (2 * len(METRICS))]
    for rule in args.rules:
        per = results[rule]
        cells = [' / '.join(f'{per[s][m]:.3f}' for s in args.seeds) for m in METRICS]
        means = [f'{statistics.fmean(per[s][m] for s in args.seeds):.3f}' for m in METRICS]
        lines.append(f'| {rule} | ' + ' | '.join(cells) + ' | ' + ' | '.join(means) + ' |')
    table = '\n'.join(lines)
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'layer_decay.json'), 'w') as f:
        json.dump(dict(seeds=args.seeds, results=results), f, indent=2)
    with open(osp.join(args.out, 'layer_decay.md'), 'w') as f:
        f.write(table + '\n')
    print(table)


if __name__ == '__main__':
    main()
