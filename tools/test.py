#!/usr/bin/env python
"""Evaluate a checkpoint with an mmdet-style config (mmdet's tools/test.py flags), with mmscalenet registered."""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from train import _DictAction  # noqa: E402  (tools/ is on sys.path when run as a script)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (and eval) a model (mmscalenet / mmdet config)')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    p.add_argument('--out', type=str, help='dump predictions to a pickle file (.pkl) for offline evaluation')
    p.add_argument('--show', action='store_true', help='show prediction results')
    p.add_argument('--show-dir', help='directory where painted images will be saved (relative to the work dir)')
    p.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    p.add_argument('--cfg-options', nargs='+', action=_DictAction, default={}, help='override config keys')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint file not found: {args.checkpoint}')
    from mmscalenet.tools_common import build_runner_cfg, load_config
    cfg = load_config(args.config, args.cfg_options)
    cfg = build_runner_cfg(cfg, args.config, work_dir=args.work_dir, launcher=args.launcher)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        if 'visualization' not in cfg.default_hooks:
            raise SystemExit(f'{args.config}: --show/--show-dir need a "visualization" default hook (detection '
                             f'configs have one)')
        vis = cfg.default_hooks.visualization
        vis.draw, vis.interval = True, 1
        vis.show, vis.wait_time = args.show, args.wait_time
        if args.show_dir:
            vis.test_out_dir = args.show_dir
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl file')
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    print(metrics)


if __name__ == '__main__':
    main()
