#!/usr/bin/env python
"""Train a model from an mmdet-style config (mmdet's tools/train.py flags), with mmscalenet registered.

Examples:
    python tools/train.py configs/demo/digits_cls_scalenet.py --work-dir work_dirs/x
    bash tools/dist_train.sh configs/coco/CONFIG.py 8
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a detector or classifier (mmscalenet / mmdet config)')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
    p.add_argument('--amp', action='store_true', default=False, help='enable automatic-mixed-precision training')
    p.add_argument('--auto-scale-lr', action='store_true', help='scale the lr by the actual total batch size')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or without a value from the latest one in the work dir')
    p.add_argument('--cfg-options', nargs='+', action=_DictAction, default={},
                   help='override config keys, e.g. train_cfg.max_epochs=3 model.backbone.depth=24')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


class _DictAction(argparse.Action):
    """Defer to mmengine's DictAction (imported lazily so --help works fast)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        DictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def main(argv=None):
    args = parse_args(argv)
    from mmscalenet.tools_common import build_runner_cfg, load_config
    cfg = load_config(args.config, args.cfg_options)
    cfg = build_runner_cfg(cfg, args.config, work_dir=args.work_dir, launcher=args.launcher)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
