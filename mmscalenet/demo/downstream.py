"""What the demo's downstream halves (detection, segmentation) share: the check that the rows they are asked for
exist and have their backbones, a row's config made ready for one demo run, and one row's training + test."""
from __future__ import annotations

import os
import os.path as osp
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


class MissingBackboneError(FileNotFoundError):
    """The classification half has not written its backbone checkpoints yet."""


def pick_rows(rows: Sequence[Tuple[str, str]], runs: Optional[Sequence[str]], half: str,
              hint: str = '') -> List[Tuple[str, str]]:
    """The ``(row, checkpoint file)`` pairs of ``rows`` named in ``runs`` (all of them for None), in ``rows``'
    order; a name not in ``rows`` is a ValueError."""
    names = [name for name, _ in rows]
    runs = list(runs or names)
    unknown = sorted(set(runs) - set(names))
    if unknown:
        raise ValueError(f'unknown {half} run(s) {unknown}: choose from {names}{hint}')
    return [(name, rel) for name, rel in rows if name in runs]


def select_rows(work_dir: str, rows: Sequence[Tuple[str, str]], runs: Optional[Sequence[str]],
                half: str, hint: str = '') -> List[Tuple[str, str]]:
    """:func:`pick_rows`, and a checkpoint missing under ``work_dir`` is one :class:`MissingBackboneError` naming
    every missing file."""
    chosen = pick_rows(rows, runs, half, hint)
    missing = [osp.join(work_dir, rel) for _, rel in chosen if not osp.isfile(osp.join(work_dir, rel))]
    if missing:
        raise MissingBackboneError(
            f'backbone checkpoint(s) {", ".join(missing)} not found: run the classification half first '
            f'(python -m mmscalenet.demo.classification --work-dir {work_dir}, or make demo)')
    return chosen


def prepare_config(path: str, checkpoint: str, run_dir: str, seed: int, max_iters: Optional[int], name: str):
    """The config at ``path`` with its backbone loaded from ``checkpoint``, writing into ``run_dir``, seeded, tested
    once after training (no validation: ``train_seconds`` then excludes evaluation) and, with ``max_iters``, the
    schedule fitted to it: shorter cuts every phase, longer keeps the warm-up and stretches the last phase (the
    cosine decay) to end there, so a longer run is a longer schedule."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    if max_iters is not None:
        cfg.train_cfg.max_iters = max_iters
        cfg.default_hooks.checkpoint.interval = max_iters
        for sched in cfg.param_scheduler:
            sched.end = min(sched.end, max_iters)
            sched.begin = min(sched.begin, max(max_iters - 1, 0))
        cfg.param_scheduler[-1].end = max_iters
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    cfg.work_dir = run_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    stamp = f'{os.getpid()}_{time.strftime("%Y%m%d_%H%M%S")}'
    cfg.experiment_name = f'{name}_{stamp}'
    cfg.visualizer.name = f'{name}_{stamp}'
    return cfg


def train_and_test(cfg) -> Dict[str, Any]:
    """Train with mmengine's Runner, then test; the runner, both times, the test metrics and the backbone's depth
    and parameter count."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    t0 = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = runner.test()
    test_seconds = time.perf_counter() - t0
    backbone = runner.model.backbone
    return dict(runner=runner, train_seconds=train_seconds, test_seconds=test_seconds, metrics=metrics,
                depth=backbone.plan.depth, backbone_params=int(sum(p.numel() for p in backbone.parameters())))


def row_entry(out: Dict[str, Any], cfg, config: str, **metrics: float) -> Dict[str, Any]:
    """A row's ``summary.json`` entry: its ``metrics``, then the times, depth, parameters and schedule of
    :func:`train_and_test`'s ``out``, and the ``config`` it ran (relative to the checkout)."""
    return dict(metrics, train_seconds=round(out['train_seconds'], 1), test_seconds=round(out['test_seconds'], 1),
                depth=out['depth'], backbone_params=out['backbone_params'],
                params=out['backbone_params'],   # every row of every step has `params` (the backbone's, here)
                iters=int(cfg.train_cfg.max_iters),
                batch_size=int(cfg.train_dataloader.batch_size), config=config)


def rows_table(section: Dict[str, Any], rows: Sequence[str],
               metrics: Sequence[Tuple[str, str, Callable[[float], str]]]) -> str:
    """Markdown table of the ``rows`` that ran (in that order): backbone, depth, backbone parameters, each of
    ``metrics`` (column header, entry key, format) and the training seconds."""
    lines = ['| backbone | depth | backbone params | ' + ' | '.join(h for h, _, _ in metrics) + ' | train s |',
             '| --- | --- | --- | ' + ' | '.join('---' for _ in metrics) + ' | --- |']
    for row in rows:
        if row in section:
            r = section[row]
            lines.append(f'| {row} | {r["depth"]} | {r["backbone_params"]:,} | '
                         + ' | '.join(fmt(r[key]) for _, key, fmt in metrics) + f' | {r["train_seconds"]:.0f} |')
    return '\n'.join(lines)
