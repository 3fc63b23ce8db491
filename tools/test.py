#!/usr/bin/env python
"""Evaluate a checkpoint with an mmdet-style config (mmdet's tools/test.py flags), with mmscalenet registered.

The checkpoint is loaded with weights_only=True (a file carrying pickled code is refused) and strictly: a
checkpoint that does not match the config's model is an error, not a silent evaluation of random weights. Bad paths,
keys and checkpoints print one line naming the file or key and exit with status 1; --out is written only when the
evaluation completes.
"""
import argparse
import os
import os.path as osp
import sys
import traceback

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (and eval) a model (mmscalenet / mmdet config)',
                                epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    p.add_argument('--out', type=str, help='dump predictions to a pickle file (.pkl) for offline evaluation: '
                                           'mmdet\'s format for detectors; for classifiers one dict per image '
                                           '(pred_score, pred_label, gt_label, img_path)')
    p.add_argument('--show', action='store_true', help='show prediction results')
    p.add_argument('--show-dir', help='directory where painted images will be saved (relative to the work dir); '
                                      'classifiers: each image with its top-5 classes; segmentors: image and '
                                      'predicted mask overlaid, side by side')
    p.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    p.add_argument('--force', action='store_true',
                   help='overwrite an existing --out file (never an input, never through a symbolic link)')
    p.add_argument('--smoke', action='store_true',
                   help='the config shrunk as tools/train.py --smoke shrinks it (to test a smoke run\'s checkpoint); '
                        'work dir work_dirs/smoke/CONFIG_NAME')
    p.add_argument('--cfg-options', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                   help='override config keys')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    from mmscalenet.tools_common import finish_args
    return finish_args(p, args)


def prepare(args):
    from mmscalenet.tools_common import (ToolError, check_checkpoint_file, default_work_dir, is_classifier,
                                         load_config)
    check_checkpoint_file(args.checkpoint)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out must be a .pkl file, got {args.out}')
    from mmscalenet.smoke import load_smoke_config
    cfg = (load_smoke_config if args.smoke else load_config)(args.config, args.cfg_options)
    if args.smoke:
        args.work_dir = default_work_dir(cfg, args.config, args.work_dir, smoke=True)
    _check_outputs(args, cfg)
    missing = [k for k in ('test_dataloader', 'test_evaluator', 'test_cfg') if not cfg.get(k, None)]
    if missing:
        raise ToolError(f'{args.config} cannot be tested: it has no {", ".join(missing)}')
    cfg.load_from = None      # loaded strictly below, not by mmengine's lenient load_from
    cfg.resume = False
    if args.show_dir and is_classifier(cfg):
        # classifiers: each test image drawn with its top-5 classes (names from the test set's metainfo)
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='ScaleNetClsVisualizationHook', out_dir=args.show_dir, topk=5)]
    elif (args.show or args.show_dir) and cfg.get('default_scope', None) == 'mmseg':
        # segmentors (mmseg's tools/test.py does the same): the visualiser saves image | prediction overlays
        vis = cfg.default_hooks.get('visualization', None) or dict(type='SegVisualizationHook')
        vis.update(draw=True, interval=1, show=args.show, wait_time=args.wait_time)
        cfg.default_hooks.visualization = vis
    elif args.show or args.show_dir:
        if 'visualization' not in cfg.default_hooks:
            raise ToolError(f'{args.config}: --show/--show-dir need a "visualization" default hook (detection '
                            f'configs have one)')
        vis = cfg.default_hooks.visualization
        vis.draw, vis.interval = True, 1
        vis.show, vis.wait_time = args.show, args.wait_time
        if args.show_dir:
            vis.test_out_dir = args.show_dir
    return cfg


def _check_outputs(args, cfg):
    """--out, --show-dir and the work dir writable before the evaluation (the results would be lost after it)."""
    from mmscalenet.run_checks import check_loop_values, check_output_dir
    from mmscalenet.tools_common import check_destination, default_work_dir
    check_loop_values(cfg, args.config)
    work_dir = default_work_dir(cfg, args.config, args.work_dir)
    check_output_dir(work_dir, 'work dir')
    if args.out is not None:
        check_destination(args.out, args.force, (args.checkpoint, args.config), what='--out')
    if args.show_dir:
        check_output_dir(args.show_dir if osp.isabs(args.show_dir) else osp.join(work_dir, args.show_dir),
                         '--show-dir')


def _warn_nonfinite(model, checkpoint):
    """A checkpoint with NaN / inf weights evaluates to chance without a word: say so before the metrics."""
    import torch
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        print(f'warning: {checkpoint}: {len(bad)} tensor(s) hold NaN or infinite values ({", ".join(bad[:4])}'
              f'{", ..." if len(bad) > 4 else ""}); the metrics below describe a broken model', file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    from mmscalenet.tools_common import prepare_or_report
    cfg = prepare_or_report(args.config, lambda: prepare(args))
    if cfg is None:
        return 1
    from mmscalenet.checkpoint import safe_mmengine_io
    with safe_mmengine_io():   # mmengine loads the checkpoint with weights_only=True
        return _test(args, cfg)


def _test(args, cfg):
    from mmscalenet.tools_common import (ToolError, WorkDirGuard, build_runner_cfg, default_work_dir, format_error,
                                         is_classifier, user_error_types)
    errors = user_error_types()
    guard = WorkDirGuard(default_work_dir(cfg, args.config, args.work_dir))
    try:
        cfg = build_runner_cfg(cfg, args.config, work_dir=guard.work_dir, launcher=args.launcher)
        if args.show_dir and cfg.get('default_scope', None) == 'mmseg':   # relative to the work dir, as mmdet's
            cfg.visualizer.save_dir = os.path.join(cfg.work_dir, args.show_dir)
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg)
        try:
            runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        except RuntimeError as err:   # mmengine's strict load: missing / unexpected keys, shape mismatches
            raise ToolError(f'{args.checkpoint} does not match the model of {args.config}: '
                            f'{str(err).strip().splitlines()[0]} ... (is it a checkpoint of this config? A '
                            f'backbone-only ScaleNet checkpoint goes into model.backbone.init_cfg for training)') \
                from None
        _warn_nonfinite(runner.model, args.checkpoint)
        if args.out is not None:
            if is_classifier(cfg) or cfg.get('default_scope', None) == 'mmseg':
                # one dict per image (segmentors: with pred_sem_seg as mmseg's data sample holds it): pred_score (all classes), pred_label, gt_label, img_path / sample_idx
                from mmengine.evaluator import DumpResults
                runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
            else:
                from mmdet.evaluation import DumpDetResults
                runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    except errors as err:
        guard.undo()
        print(format_error(err), file=sys.stderr)
        return 1
    try:
        metrics = runner.test()
    except errors as err:
        traceback.print_exc()
        print(format_error(err), file=sys.stderr)
        return 1
    print(metrics)
    return 0


if __name__ == '__main__':
    sys.exit(main())
