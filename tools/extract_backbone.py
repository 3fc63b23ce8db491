#!/usr/bin/env python
"""Turn an ImageNet-stage run checkpoint (mmengine, ScaleNetClassifier with a ScaleNetViT or ScaleNetSwin backbone)
into a ScaleNet-format backbone file.

The output holds the backbone's unique tensors, the depth plan and the classifier head; detection configs load it
with ``backbone.init_cfg=dict(type='Pretrained', checkpoint=DST)``, and the grown COCO configs name
``work_dirs/<ImageNet config name>/backbone.pth``, where this tool writes by default. SRC may be a run's work dir:
the best checkpoint by val top-1 (``best_accuracy_top1_epoch_*.pth``) is taken, else the last one.
An existing output (an earlier extraction's backbone.pth) is replaced only with --force.

The backbone is rebuilt from the ScaleNet metadata the training run wrote into every checkpoint
(``meta.scalenet``: plain data, no code), or from the model config of --config. The config text mmengine also
stores in a checkpoint (``meta.cfg``) is never read: executing it would run whatever Python the file carries.

If the run used EMA (``configs/_base_/ema.py``), mmengine saved the averaged weights as the checkpoint's
``state_dict``: they are what is extracted; --no-ema takes the raw weights instead.

Examples:
    python tools/extract_backbone.py work_dirs/scalenet_deit-s-24l_8xb128-100e_in1k   # -> <that dir>/backbone.pth
    python tools/extract_backbone.py work_dirs/x/epoch_100.pth backbone.pth --config configs/imagenet/X.py
"""
import argparse
import glob
import os
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('src', help='run checkpoint (.pth) or a run work dir (takes its best, else last, checkpoint)')
    p.add_argument('dst', nargs='?', default=None,
                   help='output backbone checkpoint (.pth or .safetensors), written atomically; default: backbone.pth '
                        'in the work dir (SRC, or the folder holding SRC)')
    p.add_argument('--config', help='the run\'s config, for a checkpoint without ScaleNet metadata (or to override '
                                    'it); only this file is executed, never text stored in the checkpoint')
    p.add_argument('--no-head', action='store_true', help='leave the classifier head out')
    p.add_argument('--no-ema', action='store_true', help='take the raw weights of an EMA run (ema_state_dict)')
    p.add_argument('--force', action='store_true',
                   help='overwrite an existing output (e.g. the backbone.pth of an earlier extraction; never the '
                        'checkpoint itself, never through a symbolic link)')
    return p.parse_args(argv)


def find_checkpoint(src: str) -> str:
    """A file as it is; a work dir -> its best-top-1 checkpoint, else the latest (``latest_checkpoint``)."""
    if osp.isfile(src):
        return src
    if not osp.isdir(src):
        raise SystemExit(f'no such checkpoint file or work dir: {src}')
    best = glob.glob(osp.join(src, 'best_accuracy_top1_*.pth'))
    if best:
        return max(best, key=lambda f: int((re.findall(r'(\d+)\.pth$', f) or ['0'])[0]))
    from mmscalenet.tools_common import latest_checkpoint
    last = latest_checkpoint(src)
    if last is None:
        raise SystemExit(f'{src} holds no checkpoint (best_accuracy_top1_*.pth, last_checkpoint, epoch_/iter_*.pth)')
    return last


def backbone_kwargs(obj, config_path):
    """``(backbone class, its arguments)`` of the run's backbone: from --config, else from the checkpoint's ScaleNet
    metadata (its recorded family: ScaleNetViT or ScaleNetSwin)."""
    from mmscalenet.checkpoint import FAMILIES, CheckpointError, family_of, model_kwargs_from_meta, split_checkpoint
    classes = {cls.__name__: cls for cls, _, _ in FAMILIES.values()}
    if config_path:
        from mmengine.config import Config
        if not osp.isfile(config_path):
            raise SystemExit(f'config file not found: {config_path}')
        model = Config.fromfile(config_path).get('model') or {}
        if model.get('type') != 'ScaleNetClassifier' or 'backbone' not in model:
            raise SystemExit(f'{config_path}: model.type is {model.get("type")!r}, expected ScaleNetClassifier with '
                             f'a backbone')
        bb = dict(model['backbone'])
        kind = str(bb.pop('type', 'ScaleNetViT')).split('.')[-1]
        if kind not in classes:
            raise SystemExit(f'{config_path}: the backbone is a {kind}, not one of {sorted(classes)}')
        bb['init_cfg'] = None
        return classes[kind], bb
    try:
        _, meta = split_checkpoint(obj)
        return FAMILIES[family_of(meta) or 'vit'][0], model_kwargs_from_meta(meta)
    except CheckpointError as err:
        raise SystemExit(f'{err}. Pass the run\'s config with --config') from None


def main(argv=None):
    args = parse_args(argv)
    import torch

    import mmscalenet  # noqa: F401  (registers mmscalenet)
    from mmscalenet.checkpoint import CheckpointError, backbone_state_dict, safe_load, save_scalenet, timm_head
    from mmscalenet.checkpoint.crosscheck import fit_before_build
    from mmscalenet.expansion import count_parameters, format_parameter_table

    from mmscalenet.tools_common import ToolError, check_destination
    src = find_checkpoint(args.src)
    dst = args.dst or osp.join(args.src if osp.isdir(args.src) else osp.dirname(osp.abspath(src)), 'backbone.pth')
    try:
        check_destination(dst, args.force, (src,))
    except ToolError as err:
        raise SystemExit(f'error: {err}')
    try:
        obj = safe_load(src)
    except CheckpointError as err:
        raise SystemExit(str(err))
    if not isinstance(obj, dict) or not isinstance(obj.get('state_dict'), dict):
        raise SystemExit(f'{src} is not an mmengine run checkpoint (no "state_dict")')
    state = obj['state_dict']
    if args.no_ema:
        if not isinstance(obj.get('ema_state_dict'), dict):
            raise SystemExit(f'--no-ema: {src} has no ema_state_dict (the run did not use EMA)')
        state = {k[len('module.'):]: v for k, v in obj['ema_state_dict'].items() if k.startswith('module.')}
    if not any(k.startswith('backbone.') for k in state):
        raise SystemExit(f'{src} has no backbone.* tensors: not a ScaleNetClassifier checkpoint')
    cls, kwargs = backbone_kwargs(obj, args.config)
    bb_state, head = backbone_state_dict({k: v for k, v in state.items() if isinstance(v, torch.Tensor)},
                                         cls.family)
    try:   # the sizes the metadata (or --config) asks for, against the file's tensors, before any memory is taken
        fit_before_build(kwargs, bb_state, src, cls=cls)
        model = cls(**kwargs)
    except CheckpointError as err:
        hint = '' if args.config else '. Pass the run\'s config with --config'
        raise SystemExit(f'error: {err}{hint}')
    except (TypeError, ValueError) as err:
        raise SystemExit(f'cannot build the backbone of {src}: {err}')
    model.load_state_dict(bb_state, strict=True)   # the same keys and shapes: fit_before_build checked them
    head = {} if args.no_head else timm_head(head, model.num_features[-1] if isinstance(model.num_features, tuple)
                                             else model.num_features)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    save_scalenet(model, dst, head=head or None)
    meta = obj.get('meta') or {}
    plans = [plan for _, plan, _ in model.growth_stacks()]
    print(f'{src} (epoch {meta.get("epoch", "?")}) -> {dst}')
    print(f'{type(model).__name__}: base depth {_one(p.base_depth for p in plans)} -> depth '
          f'{_one(p.depth for p in plans)}, sources {_one(list(p.sources) for p in plans)}; head: '
          f'{tuple(head["weight"].shape) if head else "not included"}')
    print(format_parameter_table(count_parameters(model)))


def _one(values):
    """A ViT's single value, a Swin's per-stage tuple."""
    values = list(values)
    return values[0] if len(values) == 1 else tuple(values)


if __name__ == '__main__':
    main()
