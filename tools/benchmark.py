#!/usr/bin/env python
"""Throughput and memory of a ScaleNet model against timm's ViT, side by side in one process and one run.

Classification (default): the grown ScaleNetViT + linear head against timm's ``VisionTransformer`` of the same
depth D and of the base depth L. ``--backbone swin``: the grown ScaleNetSwin (default Swin-T grown to Swin-S's
stage depths 2,2,18,2) + linear head against timm's ``SwinTransformer`` of the same depths (Swin-S) and of the base
depths (Swin-T). Detection (``--detection``): the featmap backbone at 1024x1024 with window
attention and relative positions against timm's ViTDet-style (SAM) backbone of the same depth.

Each model: warm-up steps, then ``--repeats`` timed repeats of ``--steps`` steps, interleaved across the models
so that load drifts hit all alike; the median is reported. A train step is forward + backward + AdamW step;
inference is a no-grad forward. Peak memory (one step of one model, measured separately) is CUDA max allocated on
GPU and peak RSS (VmHWM) on CPU; where the kernel cannot reset VmHWM, the CPU figure is the process-wide peak and
``peak_mem_scope`` says 'process'. Needs only torch and timm.

Examples:
    python tools/benchmark.py --device cpu --arch deit-small --depth 24 --batch-size 8
    python tools/benchmark.py --device cuda --amp bf16 --batch-size 128 --arch deit-base --depth 24 --compile
    python tools/benchmark.py --device cuda --amp bf16 --detection --batch-size 2 --depth 24 --json
    python tools/benchmark.py --device cpu --backbone swin --batch-size 4 --warmup 2 --steps 2 --repeats 3
    python tools/benchmark.py --onnx --arch deit-tiny --depth 24 --batch-size 1   # onnxruntime CPU latency

--onnx: each model is exported with mmscalenet.deploy (checked against PyTorch first) and timed in onnxruntime on
the CPU (latency per batch, median of the repeats) instead of in PyTorch; the file sizes are reported beside it.
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--config', default=None,
                   help='take the grown backbone from a config (ImageNet, COCO, ADE20K or demo): its family, arch, '
                        'depth(s), adapter and input size (a featmap ViT is timed as --detection); the other flags '
                        'then set only what the config leaves open')
    p.add_argument('--backbone', choices=['vit', 'swin'], default='vit', help='ScaleNetViT (default) or '
                   'ScaleNetSwin against timm\'s SwinTransformer')
    p.add_argument('--arch', default=None, help='deit-tiny | deit-small | deit-base, or EMBED,LAYERS,HEADS for a '
                   'custom size (default deit-small); with --backbone swin: swin-tiny | swin-small | swin-base '
                   '(the base model, default swin-tiny)')
    p.add_argument('--depth', type=int, default=None, help='grown depth D (default 2x the base depth)')
    p.add_argument('--depths', default='2,2,18,2', help='--backbone swin: grown stage depths (default 2,2,18,2, '
                   'Swin-S)')
    p.add_argument('--adapter', choices=['parallel', 'lora', 'none'], default='parallel')
    p.add_argument('--bottleneck', type=int, default=8)
    p.add_argument('--rank', type=int, default=8)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, default=None, help='default 224 (1024 with --detection)')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--amp', choices=['none', 'bf16'], default='none', help='autocast dtype (default none)')
    p.add_argument('--compile', action='store_true', help='torch.compile every model')
    p.add_argument('--detection', action='store_true', help='featmap backbone with window attention')
    p.add_argument('--window-size', type=int, default=14)
    p.add_argument('--modes', default='train,infer', help='comma list of train,infer')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--steps', type=int, default=5, help='steps per timed repeat')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--stat', choices=['median', 'best'], default='median', help='rate reported per model: median '
                   'of the repeats (default) or the best repeat (on a machine shared with other jobs, contention '
                   'only ever slows a repeat down)')
    p.add_argument('--no-base', action='store_true', help='skip timm at the base depth')
    p.add_argument('--json', action='store_true', help='print one JSON document instead of the table')
    p.add_argument('--onnx', action='store_true', help='onnxruntime CPU latency and file size of each model\'s '
                   'ONNX export instead of PyTorch throughput')
    args = p.parse_args(argv)
    if args.config:
        try:
            _from_config(args)
        except (OSError, ValueError, KeyError, TypeError) as err:
            p.error(f'--config {args.config}: {err}')
    if args.img_size is None:
        args.img_size = 1024 if args.detection else 224
    if args.arch is None:
        args.arch = 'swin-tiny' if args.backbone == 'swin' else 'deit-small'
    if args.backbone == 'swin':
        if args.detection:
            p.error('--detection is for --backbone vit (the Swin row times the classifier)')
        try:
            args.depths = tuple(int(v) for v in args.depths.split(','))
        except ValueError:
            p.error(f'--depths must be a comma list of integers, got {args.depths!r}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda requested but CUDA is not available')
    if args.onnx and (args.device != 'cpu' or args.compile or args.amp != 'none'):
        p.error('--onnx times onnxruntime on the CPU: leave out --device cuda, --compile and --amp')
    modes = [m for m in args.modes.split(',') if m]
    if not modes or set(modes) - {'train', 'infer'}:
        p.error(f'--modes must be a comma list of train,infer; got {args.modes!r}')
    args.modes = modes
    return args


def _from_config(args) -> None:
    """Fill the backbone flags from ``args.config``'s ``model.backbone`` (a ScaleNetViT or ScaleNetSwin entry)."""
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    bb = (cfg.get('model', None) or {}).get('backbone', None)
    kind = str((bb or {}).get('type', '')).split('.')[-1]
    if kind not in ('ScaleNetViT', 'ScaleNetSwin'):
        raise ValueError(f'its model.backbone is {kind or "missing"}, not a ScaleNetViT / ScaleNetSwin')
    if bb.get('growth', 'shared') != 'shared':
        raise ValueError(f'growth={bb["growth"]!r}: the foil is a plain model of the grown depth, which the timm '
                         f'rows of the benchmark already time')
    from mmscalenet.models.adapters import parse_adapter_cfg
    adapter = bb.get('adapter', 'auto')
    # the model's own defaults fill what the config leaves out (bottleneck, rank)
    adapter = parse_adapter_cfg(dict(type='ParallelAdapter') if adapter == 'auto' else adapter)
    args.adapter = {None: 'none', 'ParallelAdapter': 'parallel', 'LoRA': 'lora'}[(adapter or {}).get('type')]
    args.bottleneck = int((adapter or {}).get('bottleneck', args.bottleneck))
    args.rank = int((adapter or {}).get('rank', args.rank))
    size = bb.get('img_size', 224)
    args.img_size = int(size if isinstance(size, int) else size[0])
    arch = bb.get('arch', 'deit-small' if kind == 'ScaleNetViT' else 'swin-tiny')
    if kind == 'ScaleNetSwin':
        args.backbone, args.arch = 'swin', arch
        if bb.get('depths') is not None:
            args.depths = ','.join(str(d) for d in bb['depths'])
        return
    args.backbone = 'vit'
    args.arch = arch if isinstance(arch, str) else f'{arch["embed_dims"]},{arch["num_layers"]},{arch["num_heads"]}'
    args.depth = bb.get('depth') or (arch['num_layers'] if isinstance(arch, dict) else None)
    if bb.get('out_type') == 'featmap':
        args.detection = True
        args.window_size = int(bb.get('window_size') or 0)


def _arch(spec):
    from mmscalenet.models import resolve_arch
    if ',' in spec:
        e, l, h = (int(v) for v in spec.split(','))
        return resolve_arch(dict(embed_dims=e, num_layers=l, num_heads=h))
    return resolve_arch(spec)


class _Classifier(nn.Module):
    """ScaleNet backbone + linear head, so the train step matches timm's classifier."""

    def __init__(self, backbone, num_classes=1000):
        super().__init__()
        self.backbone = backbone
        width = backbone.num_features   # an int (ViT, timm's meaning) or the widths per stage (Swin)
        width = width[-1] if isinstance(width, (list, tuple)) else width
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def build_swin_models(args):
    """ScaleNetSwin (grown) + head, timm's Swin at the grown depths, timm's Swin at the base depths."""
    from timm.models.swin_transformer import SwinTransformer

    from mmscalenet.models import ScaleNetSwin, resolve_swin_arch
    a = resolve_swin_arch(args.arch)
    base, grown = tuple(a['depths']), args.depths
    adapter = {'parallel': dict(type='ParallelAdapter', bottleneck=args.bottleneck),
               'lora': dict(type='LoRA', rank=args.rank), 'none': None}[args.adapter]
    common = dict(img_size=args.img_size, patch_size=a['patch_size'], embed_dim=a['embed_dims'],
                  num_heads=a['num_heads'], window_size=a['window_size'], mlp_ratio=a['mlp_ratio'])
    sn = _Classifier(ScaleNetSwin(args.arch, depths=grown, adapter=adapter, img_size=args.img_size,
                                  out_type='pooled'))
    models = [(f'scalenet {args.arch} {base}->{grown} ({args.adapter})', sn, True),
              (f'timm Swin depths {grown}', SwinTransformer(depths=grown, **common), False)]
    if not args.no_base:
        models.append((f'timm Swin depths {base}', SwinTransformer(depths=base, **common), False))
    return models, sum(base), sum(grown)


def build_models(args):
    """(name, model, is_scalenet) in the order they are measured."""
    if args.backbone == 'swin':
        return build_swin_models(args)
    import timm.models.vision_transformer as tvit

    from mmscalenet.models import ScaleNetViT
    a = _arch(args.arch)
    L = a['num_layers']
    D = args.depth or 2 * L
    adapter = {'parallel': dict(type='ParallelAdapter', bottleneck=args.bottleneck),
               'lora': dict(type='LoRA', rank=args.rank), 'none': None}[args.adapter]
    common = dict(embed_dim=a['embed_dims'], num_heads=a['num_heads'], mlp_ratio=a['mlp_ratio'])
    models = []
    if args.detection:
        from timm.models.vision_transformer_sam import VisionTransformerSAM
        from mmscalenet.expansion import spread_indices
        glob = spread_indices(D, 4)
        sn = ScaleNetViT(a, depth=D, adapter=adapter, img_size=args.img_size, out_type='featmap',
                         window_size=args.window_size, use_rel_pos=True, global_indices=glob)
        models.append((f'scalenet {L}->{D} featmap', sn, True))
        plain = VisionTransformerSAM(img_size=args.img_size, depth=D, window_size=args.window_size,
                                     global_attn_indexes=glob, use_rel_pos=True, neck_chans=0, num_classes=0,
                                     **common)
        models.append((f'timm ViTDet-style (SAM) depth {D}', _FeaturesOnly(plain), False))
    else:
        sn = _Classifier(ScaleNetViT(a, depth=D, adapter=adapter, img_size=args.img_size))
        models.append((f'scalenet {L}->{D} ({args.adapter})', sn, True))
        models.append((f'timm ViT depth {D}', tvit.VisionTransformer(img_size=args.img_size, depth=D,
                                                                      **common), False))
        if not args.no_base:
            models.append((f'timm ViT depth {L}', tvit.VisionTransformer(img_size=args.img_size, depth=L,
                                                                          **common), False))
    return models, L, D


class _FeaturesOnly(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def _loss(out):
    if isinstance(out, (tuple, list)):
        out = out[-1]
    return out.float().square().mean()


def _reset_peak(device):
    """Reset the peak-memory counter; returns False where the platform cannot (then peaks are process-wide)."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')   # resets VmHWM (peak RSS) on Linux
        status = _proc_status()
        return status['VmHWM'] <= status['VmRSS'] * 1.01
    except (OSError, KeyError):
        return False


def _proc_status():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('VmHWM:', 'VmRSS:')):
                key, value = line.split(':', 1)
                out[key] = int(value.split()[0]) / 1024
    return out


def _peak_mib(device):
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2 ** 20
    try:
        return _proc_status()['VmHWM']
    except (OSError, KeyError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_step(model, fn, args, mode):
    """One train step (forward, backward, AdamW) or one no-grad forward, on a fixed random batch."""
    device = torch.device(args.device)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    amp = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.amp == 'bf16')
    if mode == 'infer':
        model.eval()

        def infer():
            with torch.no_grad(), amp:
                fn(x)
        return infer
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train():
        with amp:
            loss = _loss(fn(x))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return train


def _sync(args):
    if args.device == 'cuda':
        torch.cuda.synchronize()


def measure_memory(model, fn, args, mode):
    """Peak memory of one step of this model alone (after a warm-up step)."""
    step = make_step(model, fn, args, mode)
    step()
    _sync(args)
    scoped = _reset_peak(args.device)
    step()
    _sync(args)
    return _peak_mib(args.device), ('model' if scoped else 'process')


def measure_speed(models, fns, args, mode):
    """Images/s per model; repeats are interleaved across models so load drifts hit all of them alike.

    The order rotates every repeat: on CPU the first step after another model runs pays for the allocator
    handing memory back and forth, and a fixed order would charge that to the same model every time.
    """
    steps = [make_step(m, f, args, mode) for m, f in zip(models, fns)]
    for step in steps:
        for _ in range(args.warmup):
            step()
    _sync(args)
    rates = [[] for _ in steps]
    for r in range(args.repeats):
        for k in range(len(steps)):
            i = (r + k) % len(steps)
            step = steps[i]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            _sync(args)
            rates[i].append(args.steps * args.batch_size / (time.perf_counter() - t0))
    return rates


def unique_params(model):
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def run_onnx(models, args):
    """ONNX export (checked) + onnxruntime latency per model: the rows of ``--onnx``."""
    import tempfile

    from mmscalenet.deploy import export_model, onnx_session
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, model, is_sn) in enumerate(models):
            print(f'[benchmark] {name}: ONNX export and check ...', file=sys.stderr, flush=True)
            report = export_model(model, osp.join(tmp, f'model{k}.onnx'), img_size=args.img_size,
                                  check_batches=(args.batch_size, args.batch_size + 1))
            session = onnx_session(report['path'], threads=torch.get_num_threads())
            feed = {session.get_inputs()[0].name: torch.randn(args.batch_size, 3, args.img_size,
                                                                  args.img_size).numpy()}
            for _ in range(args.warmup):
                session.run(None, feed)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    session.run(None, feed)
                times.append((time.perf_counter() - t0) / args.steps * 1000)
            rows.append(dict(model=name, scalenet=is_sn, params=unique_params(model), onnx_bytes=report['bytes'],
                             onnx_max_abs_diff=max(report['max_abs_diff'].values()),
                             onnx_ms_per_batch=statistics.median(times), onnx_ms_repeats=times))
    return rows


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    models, L, D = build_models(args)
    if args.onnx:
        return _report_onnx(args, run_onnx(models, args), L, D)
    device_name = torch.cuda.get_device_name() if args.device == 'cuda' else (platform.processor() or
                                                                             platform.machine())
    if args.device == 'cpu':
        device_name += f', {torch.get_num_threads()} threads'
    device = torch.device(args.device)
    for _, model, _ in models:
        model.to(device)
    fns = [torch.compile(m) if args.compile else m for _, m, _ in models]
    results = [dict(model=name, scalenet=is_sn, params=unique_params(m)) for name, m, is_sn in models]
    for mode in args.modes:
        for row, (name, model, _), fn in zip(results, models, fns):
            print(f'[benchmark] {name}: {mode} memory ...', file=sys.stderr, flush=True)
            row[f'{mode}_peak_mib'], row['peak_mem_scope'] = measure_memory(model, fn, args, mode)
            model.zero_grad(set_to_none=True)
            if args.device == 'cuda':
                torch.cuda.empty_cache()
        print(f'[benchmark] {mode} speed, {args.repeats} interleaved repeats ...', file=sys.stderr, flush=True)
        for row, rates in zip(results, measure_speed([m for _, m, _ in models], fns, args, mode)):
            row[f'{mode}_img_per_s'] = statistics.median(rates) if args.stat == 'median' else max(rates)
            row[f'{mode}_repeats'] = rates
    sn, same = results[0], results[1]
    ratios = {f'{m}_vs_timm_same_depth': sn[f'{m}_img_per_s'] / same[f'{m}_img_per_s'] for m in args.modes}
    ratios['params_vs_timm_same_depth'] = sn['params'] / same['params']
    if 'train' in args.modes:
        ratios['train_peak_mem_vs_timm_same_depth'] = sn['train_peak_mib'] / same['train_peak_mib']
    doc = dict(date=datetime.now(timezone.utc).strftime('%Y-%m-%d'), device=device_name,
               torch=torch.__version__, command='python tools/benchmark.py ' + ' '.join(sys.argv[1:]),
               settings=dict(backbone=args.backbone, arch=args.arch, base_depth=L, depth=D,
                             depths=list(args.depths) if args.backbone == 'swin' else None, adapter=args.adapter,
                             batch_size=args.batch_size,
                             img_size=args.img_size, amp=args.amp, compile=args.compile, detection=args.detection,
                             warmup=args.warmup, steps=args.steps, repeats=args.repeats, stat=args.stat),
               results=results, ratios=ratios)
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc
    print(f'{doc["date"]}  {device_name}  torch {torch.__version__}  batch {args.batch_size}  '
          f'{args.img_size}px  amp {args.amp}  compile {args.compile}')
    head = '| model | unique params (M) |' + ''.join(f' {m} img/s | {m} peak MiB |' for m in args.modes)
    print(head)
    print('|' + ' --- |' * (2 + 2 * len(args.modes)))
    for r in results:
        cells = ''.join(f' {r[f"{m}_img_per_s"]:.1f} | {r[f"{m}_peak_mib"]:.0f} |' for m in args.modes)
        print(f'| {r["model"]} | {r["params"] / 1e6:.2f} |{cells}')
    print('ratios (scalenet / timm same depth): ' + ', '.join(f'{k}={v:.3f}' for k, v in ratios.items()))
    return doc


def _report_onnx(args, rows, L, D):
    sn, same = rows[0], rows[1]
    ratios = dict(onnx_latency_vs_timm_same_depth=sn['onnx_ms_per_batch'] / same['onnx_ms_per_batch'],
                  onnx_bytes_vs_timm_same_depth=sn['onnx_bytes'] / same['onnx_bytes'])
    doc = dict(date=datetime.now(timezone.utc).strftime('%Y-%m-%d'),
               device=f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
                      f'onnxruntime CPU', torch=torch.__version__,
               command='python tools/benchmark.py ' + ' '.join(sys.argv[1:]),
               settings=dict(backbone=args.backbone, arch=args.arch, base_depth=L, depth=D, adapter=args.adapter,
                             batch_size=args.batch_size, img_size=args.img_size, steps=args.steps,
                             repeats=args.repeats), results=rows, ratios=ratios)
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc
    print(f'{doc["date"]}  {doc["device"]}  batch {args.batch_size}  {args.img_size}px')
    print('| model | unique params (M) | ONNX MB | ms / batch | max abs diff to PyTorch |')
    print('| --- | --- | --- | --- | --- |')
    for r in rows:
        print(f'| {r["model"]} | {r["params"] / 1e6:.2f} | {r["onnx_bytes"] / 1e6:.1f} | '
              f'{r["onnx_ms_per_batch"]:.1f} | {r["onnx_max_abs_diff"]:.1e} |')
    print('ratios (scalenet / timm same depth): ' + ', '.join(f'{k}={v:.3f}' for k, v in ratios.items()))
    return doc


if __name__ == '__main__':
    main()
