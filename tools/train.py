#!/usr/bin/env python
"""Train a model from an mmdet-style config (mmdet's tools/train.py flags), with mmscalenet registered.

Examples:
    python tools/train.py configs/demo/digits_cls_scalenet.py --work-dir work_dirs/x
    python tools/train.py CONFIG --resume                 # continue from the work dir's latest checkpoint
    python tools/train.py CONFIG --cfg-options train_cfg.max_epochs=3 model.backbone.depth=24
    python tools/train.py configs/coco/CONFIG.py --smoke  # a minute on a CPU: does the whole set-up work?
    bash tools/dist_train.sh configs/coco/CONFIG.py 8

Besides mmdet's behaviour:
  * config path, --cfg-options keys and --resume checkpoints are checked before anything is created; a mistake
    prints one line naming the file or key and exits with status 1 (status 2 for malformed arguments);
  * checkpoints are written atomically (temporary file + rename) and loaded with weights_only=True;
  * a NaN / infinite loss stops training with an error naming the iteration (StopOnNonFiniteLossHook), every
    checkpoint carries the ScaleNet metadata (ScaleNetCheckpointMetaHook) and the RNG states + sampler position
    (ExactResumeHook, so a resumed run is bit-identical to an uninterrupted one on CPU): the hooks are added
    unless the config already lists them;
  * --resume without a value picks the newest complete checkpoint even if the run was killed mid-save;
  * on a machine without a GPU a config's AmpOptimWrapper trains in fp32 (a warning line) and --amp is refused;
  * --smoke shrinks the config to a CPU smoke run (mmscalenet/smoke.py);
  * one run per work dir: a second run stops with a line naming the first (pid, host, start time); the lock of
    a run that died is taken over (docs/reliability.md).
"""
import argparse
import os
import os.path as osp
import sys
import traceback

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a detector or classifier (mmscalenet / mmdet config)',
                                epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
    p.add_argument('--amp', action='store_true', default=False,
                   help='enable automatic-mixed-precision training (needs a GPU; a config\'s own AmpOptimWrapper '
                        'runs in fp32 on a CPU-only machine, with a warning)')
    p.add_argument('--auto-scale-lr', action='store_true', help='scale the lr by the actual total batch size')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or without a value from the latest one in the work dir')
    p.add_argument('--smoke', action='store_true',
                   help='shrink the config to a CPU smoke run (tiny backbone of the same family, small images, the '
                        'first samples of the data, 1 epoch / 2 iterations; mmscalenet/smoke.py) in '
                        'work_dirs/smoke/CONFIG_NAME; --cfg-options apply on top')
    p.add_argument('--cfg-options', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='override config keys, e.g. train_cfg.max_epochs=3 model.backbone.depth=24; unknown keys '
                        'are refused')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    from mmscalenet.tools_common import finish_args
    return finish_args(p, args)


def prepare(args):
    """Config, checks and work dir: everything before the runner (raises ToolError & co. on user mistakes)."""
    from mmscalenet.tools_common import (ToolError, add_default_hooks, check_checkpoint_file, check_training_values,
                                         checkpoint_leftovers, default_work_dir, latest_checkpoint, load_config,
                                         skip_pretrained_init)
    from mmscalenet.smoke import load_smoke_config
    cfg = (load_smoke_config if args.smoke else load_config)(args.config, args.cfg_options)
    if args.smoke:
        args.work_dir = default_work_dir(cfg, args.config, args.work_dir, smoke=True)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    from mmscalenet.run_checks import fit_amp_to_device
    fit_amp_to_device(cfg, args.config, asked=args.amp)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ToolError(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    work_dir = default_work_dir(cfg, args.config, args.work_dir)
    if args.resume == 'auto':
        found = latest_checkpoint(work_dir)
        leftovers = checkpoint_leftovers(work_dir) if found is None else []
        if leftovers:   # a run was here: starting from zero would silently throw its training away
            raise ToolError(f'--resume: {work_dir} holds {", ".join(leftovers[:4])} but no complete checkpoint '
                            f'that last_checkpoint or an epoch_N.pth / iter_N.pth names; nothing was started. '
                            f'Give the file to resume from (--resume PATH) or another --work-dir')
        if found is None:
            print(f'--resume: no checkpoint in {work_dir}, training from scratch', file=sys.stderr)
            cfg.resume, cfg.load_from = False, None
        else:
            cfg.resume, cfg.load_from = True, found
    elif args.resume is not None:
        check_checkpoint_file(args.resume, '--resume checkpoint')
        cfg.resume, cfg.load_from = True, args.resume
    elif cfg.get('load_from', None):
        check_checkpoint_file(cfg.load_from, 'load_from checkpoint')
    if cfg.get('resume', False):
        from mmscalenet.run_checks import check_resume_fits
        check_resume_fits(cfg, cfg.load_from, args.config)
        skipped = skip_pretrained_init(cfg)
        if skipped:
            print(f'--resume: {", ".join(skipped)} not loaded (the resumed checkpoint holds every tensor)',
                  file=sys.stderr)
    if 'train_dataloader' not in cfg or 'train_cfg' not in cfg or 'optim_wrapper' not in cfg:
        missing = [k for k in ('train_dataloader', 'train_cfg', 'optim_wrapper') if k not in cfg]
        raise ToolError(f'{args.config} cannot be trained: it has no {", ".join(missing)}')
    check_training_values(cfg, args.config)
    from mmscalenet.run_checks import check_loop_values, check_model_size, check_work_dir
    check_loop_values(cfg, args.config)
    check_model_size(cfg, args.config)
    check_work_dir(work_dir)
    _check_segmentation_data(cfg, args.config)
    add_default_hooks(cfg)
    cfg.work_dir = work_dir
    _cpu_distributed(cfg, args.launcher)
    return cfg


def _check_segmentation_data(cfg, config_path):
    """mmseg configs: every training image has its annotation file (mmseg would stop mid-epoch), before work."""
    from mmscalenet.datasets.segmentation import check_segmentation_split, is_segmentation_config
    if not is_segmentation_config(cfg):
        return
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    check_segmentation_split(cfg.train_dataloader.dataset, f'{config_path}: train_dataloader.dataset')


def _cpu_distributed(cfg, launcher):
    """--launcher pytorch without GPUs: gloo process group and DDP without device_ids (mmengine assumes CUDA)."""
    from mmscalenet.distributed import ddp_wrapper_cfg, init_cpu_distributed
    backend = (cfg.get('env_cfg', None) or {}).get('dist_cfg', {}).get('backend', 'gloo')
    if init_cpu_distributed(launcher, backend='gloo' if backend == 'nccl' else backend):
        wrapper = dict(cfg.get('model_wrapper_cfg', None) or ddp_wrapper_cfg())
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper


def main(argv=None):
    args = parse_args(argv)
    from mmscalenet.tools_common import ToolError, WorkDirGuard, WorkDirLock, format_error, prepare_or_report
    cfg = prepare_or_report(args.config, lambda: prepare(args))
    if cfg is None:
        return 1
    work_dir = cfg.work_dir
    if osp.isfile(work_dir):
        print(f'error: work dir {work_dir} is an existing file', file=sys.stderr)
        return 1
    guard = WorkDirGuard(work_dir)
    lock = WorkDirLock(work_dir)
    refused = ''
    if os.environ.get('RANK', '0') == '0':   # one lock per run: rank 0 holds it for all ranks
        try:
            lock.acquire()
        except ToolError as err:
            refused = format_error(err)
        except OSError as err:   # read-only file system, a folder where the lock file goes, ...
            refused = f'error: cannot lock work dir {work_dir}: {err.strerror or err} ({err.filename or work_dir})'
            guard.undo()
    refused = _from_rank_0(refused)
    if refused:
        print(refused, file=sys.stderr)
        _close_process_group(synchronise=False)
        return 1
    from mmscalenet.checkpoint import safe_mmengine_io
    try:
        with safe_mmengine_io():   # weights_only loads and atomic checkpoint writes for mmengine, this run only
            return _run(args, cfg, guard)
    finally:
        lock.release()


def _run(args, cfg, guard):
    """Build the runner and train; user mistakes print one line (status 1)."""
    from mmscalenet.tools_common import build_runner_cfg, format_error, user_error_types
    errors = user_error_types()
    work_dir = cfg.work_dir
    try:
        cfg = build_runner_cfg(cfg, args.config, work_dir=work_dir, launcher=args.launcher)
        from mmengine.registry import RUNNERS
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    except errors as err:
        guard.undo()
        print(format_error(err), file=sys.stderr)
        return 1
    from mmscalenet.checkpoint import CheckpointError
    from mmscalenet.datasets import DataError
    clear = (FloatingPointError, CheckpointError, DataError)   # messages that say everything: no traceback
    try:
        runner.train()
    except clear + errors as err:
        if not isinstance(err, clear):
            traceback.print_exc()
        if _completed_iterations(runner) == 0:   # e.g. the data set is missing: nothing worth keeping
            guard.undo()
        print(format_error(err), file=sys.stderr)
        _close_process_group(synchronise=False)
        return 1
    _close_process_group(synchronise=True)
    return 0


def _from_rank_0(text):
    """Rank 0's ``text`` on every rank when a process group is up (so all ranks stop together), else ``text``."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _close_process_group(synchronise):
    """Tear the process group down before the interpreter exits: gloo's worker threads otherwise may still be
    joinable at exit, and the process aborts ("terminate called without an active exception") after a good run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        if synchronise:   # only after a good run: a failed rank must not wait for peers stuck elsewhere
            dist.barrier()
        dist.destroy_process_group()


def _completed_iterations(runner):
    from mmengine.runner import BaseLoop
    loop = getattr(runner, '_train_loop', None)
    return loop.iter if isinstance(loop, BaseLoop) else 0


if __name__ == '__main__':
    sys.exit(main())
