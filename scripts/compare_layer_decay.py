#!/usr/bin/env python
"""Compare the layer-decay sharing rules on the detection stand-in (the table in docs/layer_decay.md).

For each seed, the ScaleNet detector of the demo is trained with every ``sharing_rule`` of
``ScaleNetLayerDecayOptimizerConstructor`` (everything else as ``configs/demo/digits_det_scalenet.py``), starting
from the classification backbones that ``tools/demo.py --seeds ...`` wrote for that seed (the default rule's
figures are the demo's own ScaleNet row of that seed: the same run). Writes
``<out>/layer_decay.json`` and ``<out>/layer_decay.md`` and prints the table.

    python tools/demo.py --seeds 0 1 2 --work-dir work_dirs/seeds
    python scripts/compare_layer_decay.py --demo-dir work_dirs/seeds --seeds 0 1 2

With --lr-table it trains nothing and prints the lr each rule gives some tensors of the shipped grown DeiT-S ViTDet
config, next to the plain 12-layer config's.
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


GROWN = 'configs/coco/vitdet_mask-rcnn_scalenet-deit-s-24_lsj-100e_coco.py'
PLAIN = 'configs/coco/vitdet_mask-rcnn_deit-s_lsj-100e_coco.py'
TABLE_KEYS = ('blocks.0.attn.qkv.weight', 'blocks.5.attn.qkv.weight', 'blocks.11.attn.qkv.weight',
              'positions.0.adapter_attn.down.weight', 'positions.11.adapter_attn.down.weight',
              'positions.12.adapter_attn.down.weight', 'positions.23.adapter_attn.down.weight')


def config_lrs(path: str, **paramwise) -> dict:
    """``{backbone tensor name: lr}`` under a config's optimizer (the backbone built on the meta device)."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    DefaultScope.get_instance('compare_layer_decay', scope_name='mmdet')
    cfg = Config.fromfile(osp.join(ROOT, path))
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = torch.nn.Module()
        model.backbone = MODELS.build(cfg.model.backbone)
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.paramwise_cfg.update(paramwise)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    return {n[len('backbone.'):]: g['lr'] for g in groups for n in g['param_names']}


def lr_table() -> str:
    plain = config_lrs(PLAIN)
    lrs = {rule: config_lrs(GROWN, sharing_rule=rule) for rule in RULES}
    base_lr = 1e-4
    lines = ['| tensor (lr / base lr) | plain 12-layer | ' + ' | '.join(f"grown, '{r}'" for r in RULES) + ' |',
             '| --- | ---: |' + ' ---: |' * len(RULES)]
    for key in TABLE_KEYS:
        cell = f'{plain[key] / base_lr:.3g}' if key in plain else '-'
        lines.append(f'| `{key}` | {cell} | ' + ' | '.join(f'{lrs[r][key] / base_lr:.3g}' for r in RULES) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-dir', default='work_dirs/seeds', help='the --work-dir of tools/demo.py --seeds')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--rules', nargs='+', choices=RULES, default=list(RULES))
    p.add_argument('--out', default='work_dirs/layer_decay', help='output folder')
    p.add_argument('--lr-table', action='store_true', help='print the lr of each rule on the shipped config; no runs')
    args = p.parse_args(argv)
    import mmscalenet  # noqa: F401  (registers the modules)
    if args.lr_table:
        print(lr_table())
        return
    from mmscalenet.demo import SCALENET_BACKBONE
    from mmscalenet.demo.jobs import run_jobs
    jobs, reused = [], {}
    for seed in args.seeds:
        source = osp.abspath(osp.join(args.demo_dir, f'seed_{seed}', 'classification'))
        if not osp.isfile(osp.join(source, osp.basename(SCALENET_BACKBONE))):
            raise SystemExit(f'{source} has no ScaleNet backbone: run tools/demo.py --seeds ... --work-dir '
                             f'{args.demo_dir} first')
        with open(osp.join(args.demo_dir, f'seed_{seed}', 'summary.json')) as f:
            demo_det = json.load(f).get('detection', {})
        for rule in args.rules:
            if rule == 'base' and 'scalenet' in demo_det and not demo_det.get('cfg_options'):
                # the demo's own ScaleNet row is this run (the default rule, same seed and backbones)
                reused[f'{rule}/{seed}'] = {m: demo_det['scalenet'][m] for m in METRICS}
                continue
            work = osp.join(args.out, f'{rule}_seed{seed}')
            os.makedirs(work, exist_ok=True)
            link = osp.join(work, 'classification')
            if not osp.exists(link):
                os.symlink(source, link)
            jobs.append((f'{rule}/{seed}', one_run, (work, seed, rule)))
    done = dict(run_jobs(jobs), **reused)   # two at a time on 2 cores (MMSCALENET_JOBS), each single-threaded
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
