"""Classification half of the embedded demo: ScaleNet vs. training from scratch on the digits stand-in (CPU).

1. *base*: a small ViT of depth L trained on the digits for E epochs: the "pretrained" model.
2. *scalenet*: base grown to 2L (cyclic map, shared weights, parallel adapters: ``digits_scalenet_8l`` of
   ``configs/_base_/models/scalenet_backbones.py``) and trained for E / 3 epochs.
3. *scratch*: an ordinary ViT of depth 2L trained from random weights for E epochs.

Same recipe for all three (``configs/demo/digits_cls_*.py``, run by mmengine's Runner); top-1 is the val accuracy
after the last epoch (no best-epoch picking). Writes ``summary.json`` (key ``classification``, merged with what is
there), ``classification.md``, ``classification_curves.png`` and the ``BASE_BACKBONE`` / ``SCALENET_BACKBONE`` /
``SCRATCH_BACKBONE`` checkpoints (for the detection half) into the work dir.

    python -m mmscalenet.demo.classification --work-dir work_dirs/demo
"""
import argparse
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional

from . import BASE_BACKBONE, SCALENET_BACKBONE, SCRATCH_BACKBONE, merge_summary

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo')
RUNS = ('base', 'scalenet', 'scratch')


def _config(run: str, work_dir: str, seed: int, init_checkpoint: Optional[str] = None):
    """``configs/demo/digits_cls_<run>.py`` as it is, with this demo run's work dir, seed and starting checkpoint."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, f'digits_cls_{run}.py'))
    if run == 'scalenet':
        cfg.model.init_cfg = dict(type='Pretrained', checkpoint=init_checkpoint)
    cfg.work_dir = osp.join(work_dir, 'classification', run)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.experiment_name = f'digits_cls_{run}'  # mmengine appends a timestamp
    return cfg


def _record_hook():
    """A hook that records val top-1 per epoch and the time spent in training epochs (validation excluded)."""
    from mmengine.hooks import Hook

    class _Record(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.top1: List[float] = []
            self.train_seconds = 0.0
            self._t0 = 0.0

        def before_train_epoch(self, runner) -> None:
            self._t0 = time.perf_counter()

        def after_train_epoch(self, runner) -> None:
            self.train_seconds += time.perf_counter() - self._t0

        def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
            if metrics and 'accuracy/top1' in metrics:
                self.top1.append(float(metrics['accuracy/top1']))

    return _Record()


def _train(cfg) -> Dict[str, Any]:
    from mmengine.runner import Runner

    from ..expansion import count_parameters
    runner = Runner.from_cfg(cfg)
    record = _record_hook()
    runner.register_hook(record, priority='LOWEST')
    runner.train()
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    return dict(model=model, depth=model.backbone.plan.depth, epochs=cfg.train_cfg.max_epochs,
                params=count_parameters(model)['unique'], top1=record.top1[-1] if record.top1 else None,
                top1_per_epoch=record.top1, train_seconds=round(record.train_seconds, 1))


def _save_backbone(model, path: str) -> None:
    from ..checkpoint import save_scalenet
    os.makedirs(osp.dirname(path), exist_ok=True)
    save_scalenet(model.backbone, path, head=model.head.state_dict())


def markdown_table(results: Dict[str, Dict[str, Any]]) -> str:
    names = dict(base=f'base (depth L, "pretrained")', scalenet='ScaleNet (grown to 2L)',
                 scratch='scratch (depth 2L)')
    rows = ['| model | depth | epochs | params | val top-1 (%) | train time (s) |',
            '| --- | ---: | ---: | ---: | ---: | ---: |']
    for run in RUNS:
        r = results[run]
        top1 = f'{r["top1"]:.2f}' if r['top1'] is not None else 'n/a'
        rows.append(f'| {names[run]} | {r["depth"]} | {r["epochs"]} | {r["params"] / 1e3:.1f} K | {top1} | '
                    f'{r["train_seconds"]:.0f} |')
    return '\n'.join(rows)


def _plot(results: Dict[str, Dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = dict(base='base, depth L (from scratch)', scalenet='ScaleNet 2L (from base)',
                  scratch='scratch, depth 2L')
    for run in RUNS:
        curve = results[run]['top1_per_epoch']
        ax.plot(range(1, len(curve) + 1), curve, marker='o', markersize=3, label=labels[run])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch of the run')
    ax.set_ylabel('val top-1 (%)')
    ax.set_title('Digits stand-in: ScaleNet vs. training from scratch')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(work_dir: str, seed: int = 0) -> Dict[str, Any]:
    """Run the three trainings and write the summary, table, plot and backbones; returns the results section."""
    import mmscalenet  # noqa: F401  (registers the modules)
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()
    return _run(work_dir, seed, start)


def _grown_job(work_dir: str, seed: int) -> Dict[str, Dict[str, Any]]:
    """The base ("pretraining") run, then the ScaleNet run grown from it; saves both backbones."""
    base = _train(_config('base', work_dir, seed))
    base_path = osp.join(work_dir, BASE_BACKBONE)
    _save_backbone(base.pop('model'), base_path)
    grown = _train(_config('scalenet', work_dir, seed, init_checkpoint=base_path))
    _save_backbone(grown.pop('model'), osp.join(work_dir, SCALENET_BACKBONE))
    return dict(base=base, scalenet=grown)


def _scratch_job(work_dir: str, seed: int) -> Dict[str, Dict[str, Any]]:
    """The depth-2L model from random weights; saves its backbone (the detection half's third row)."""
    scratch = _train(_config('scratch', work_dir, seed))
    _save_backbone(scratch.pop('model'), osp.join(work_dir, SCRATCH_BACKBONE))
    return dict(scratch=scratch)


def _run(work_dir: str, seed: int, start: float) -> Dict[str, Any]:
    from .jobs import run_jobs
    done = run_jobs([('grown', _grown_job, (work_dir, seed)), ('scratch', _scratch_job, (work_dir, seed))])
    results: Dict[str, Dict[str, Any]] = {**done['grown'], **done['scratch']}

    table = markdown_table(results)
    s, c = results['scalenet'], results['scratch']
    verdict = ('ScaleNet beats scratch' if s['top1'] > c['top1'] else 'ScaleNet does NOT beat scratch')
    note = (f'{verdict}: {s["top1"]:.2f} % vs {c["top1"]:.2f} % val top-1, with {s["epochs"]} vs {c["epochs"]} '
            f'epochs and {s["params"] / 1e3:.1f} K vs {c["params"] / 1e3:.1f} K parameters (seed {seed}).')
    with open(osp.join(work_dir, 'classification.md'), 'w') as f:
        f.write('# Digits stand-in: ScaleNet vs. scratch\n\n' + table + '\n\n' + note + '\n')
    _plot(results, osp.join(work_dir, 'classification_curves.png'))
    section = dict(results, seed=seed, wall_seconds=round(time.perf_counter() - start, 1))
    merge_summary(work_dir, 'classification', section)
    print('\n' + table + '\n\n' + note + f'\n(classification half: {section["wall_seconds"]:.0f} s)', flush=True)
    return section


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description='Classification half of the embedded ScaleNet demo (digits, CPU)')
    p.add_argument('--work-dir', default='work_dirs/demo', help='output folder (default: work_dirs/demo)')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    run(args.work_dir, args.seed)


if __name__ == '__main__':
    main()
