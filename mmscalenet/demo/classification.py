"""Classification half of the embedded demo: ScaleNet vs. training from scratch on the digits stand-in (CPU).

1. *base*: a small ViT of depth L trained on the digits for E epochs: the "pretrained" model.
2. *scalenet*: base grown to 2L (cyclic map, shared weights, parallel adapters: ``digits_scalenet_8l`` of
   ``configs/_base_/models/scalenet_backbones.py``) and trained for E / 3 epochs.
3. *progressive*: the paper's foil, base grown to 2L by independent copies of its layers (``growth='copy'``, no
   adapters: ``digits_progressive_8l``), trained exactly as *scalenet* (E / 3 epochs).
4. *scratch*: an ordinary ViT of depth 2L trained from random weights for E epochs.

Same recipe for all four (``configs/demo/digits_cls_*.py``, run by mmengine's Runner); top-1 is the val accuracy
after the last epoch (no best-epoch picking). Writes ``summary.json`` (key ``classification``, merged with what is
there), ``classification.md``, ``classification_curves.png`` and the backbone checkpoints of ``ROWS`` (for the
detection and segmentation halves) into the work dir.

    python -m mmscalenet.demo.classification --work-dir work_dirs/demo
"""
import argparse
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional

from . import ROWS, merge_summary

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'demo')
RUNS = ('base', 'scalenet', 'progressive', 'scratch')
GROWN = ('scalenet', 'progressive')   # the runs that start from the base run's backbone
BACKBONES = dict(ROWS)


def _config(run: str, work_dir: str, seed: int, init_checkpoint: Optional[str] = None, name: Optional[str] = None):
    """``configs/demo/digits_cls_<run>.py`` as it is, with this demo run's work dir, seed and starting checkpoint
    (a grown run's base; any run may start from one). ``name`` (default ``run``) names its work dir and log: the
    study's ``continued`` run is the base config started from the base checkpoint."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, f'digits_cls_{run}.py'))
    if run in GROWN or init_checkpoint is not None:
        cfg.model.init_cfg = dict(type='Pretrained', checkpoint=init_checkpoint)
    name = name or run
    cfg.work_dir = osp.join(work_dir, 'classification', name)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.experiment_name = f'digits_cls_{name}'  # mmengine appends a timestamp
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
    names = dict(base='base (depth L, "pretrained")', scalenet='ScaleNet (grown to 2L)',
                 progressive='progressive (grown to 2L, copies)', scratch='scratch (depth 2L)')
    rows = ['| model | depth | epochs | params | val top-1 (%) | train time (s) |',
            '| --- | ---: | ---: | ---: | ---: | ---: |']
    for run in [r for r in RUNS if r in results]:
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
                  progressive='progressive 2L (copies of base)', scratch='scratch, depth 2L')
    for run in [r for r in RUNS if r in results]:
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
    """Run the four trainings and write the summary, table, plot and backbones; returns the results section."""
    import mmscalenet  # noqa: F401  (registers the modules)
    from .jobs import run_graph
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()
    return finish(work_dir, seed, run_graph(jobs(work_dir, seed)), time.perf_counter() - start)


def train_run(run: str, work_dir: str, seed: int) -> Dict[str, Any]:
    """One training of the half (a grown run starts from the base run's backbone); saves its backbone."""
    init = osp.join(work_dir, BACKBONES['base']) if run in GROWN else None
    result = _train(_config(run, work_dir, seed, init_checkpoint=init))
    _save_backbone(result.pop('model'), osp.join(work_dir, BACKBONES[run]))
    return result


def jobs(work_dir: str, seed: int) -> list:
    """The half's trainings as :func:`~mmscalenet.demo.jobs.run_graph` jobs named ``classification/<run>``: the
    grown runs wait for the base run; the long scratch run is listed early so it starts at once."""
    os.makedirs(work_dir, exist_ok=True)
    order = ('base', 'scratch', 'scalenet', 'progressive')
    return [(f'classification/{run}', train_run, (run, work_dir, seed),
             ('classification/base',) if run in GROWN else ()) for run in order]


def finish(work_dir: str, seed: int, done: Dict[str, Any], wall_seconds: float) -> Dict[str, Any]:
    """Table, note, plot and the ``classification`` section of summary.json from the jobs' results."""
    results: Dict[str, Dict[str, Any]] = {run: done[f'classification/{run}'] for run in RUNS}
    table = markdown_table(results)
    s, c, g = results['scalenet'], results['scratch'], results['progressive']
    verdict = ('ScaleNet beats scratch' if s['top1'] > c['top1'] else 'ScaleNet does NOT beat scratch')
    note = (f'{verdict}: {s["top1"]:.2f} % vs {c["top1"]:.2f} % val top-1, with {s["epochs"]} vs {c["epochs"]} '
            f'epochs and {s["params"] / 1e3:.1f} K vs {c["params"] / 1e3:.1f} K parameters (seed {seed}). The '
            f'foil, progressive growth (independent copies, same epochs as ScaleNet): {g["top1"]:.2f} % with '
            f'{g["params"] / 1e3:.1f} K parameters.')
    with open(osp.join(work_dir, 'classification.md'), 'w') as f:
        f.write('# Digits stand-in: ScaleNet vs. progressive growth vs. scratch\n\n' + table + '\n\n' + note + '\n')
    _plot(results, osp.join(work_dir, 'classification_curves.png'))
    section = dict(results, seed=seed, wall_seconds=round(wall_seconds, 1))
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
