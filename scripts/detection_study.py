#!/usr/bin/env python
"""The detection-transfer study of issue 19 (docs/detection_transfer.md): diagnostics and experiments.

Why does the grown backbone's classification lead not carry into the detection stand-in? Subcommands:

    lr-table      the lr every kind of backbone tensor gets in the demo's detection configs (no training)
    equivalence   grown == its untied copy on feature maps: outputs and gradients, fused and reference path,
                  the demo's global attention and window + rel-pos (no training)
    classify      the demo's classification half once per seed into CACHE/seed<k>/ (the backbones every detection
                  experiment starts from), plus the untied copy of the grown backbone
    detect NAME   one experiment: detectors on CACHE/seed<k>/'s backbones with --cfg-options, results into
                  CACHE/NAME/seed<k>/<run>.json (a finished run is not redone); --eval-every logs val mAP
    report NAMES  mean +- std over the seeds of each experiment (markdown)
    plot NAME     val bbox mAP against iterations (from --eval-every) for each backbone, mean over the seeds
    seeds-json NAME  the demo's docs/demo_seeds.json format (tools/demo.py --seeds) from CACHE/seed<k>/'s
                  classification summaries and experiment NAME's detectors, when NAME is the demo's recipe
    classify-longer  the depth check: the base and scratch classification runs of the demo with --epochs epochs
                  (cosine stretched) into CACHE/seed<k>/ (their backbones and CACHE/seed<k>/classify_longer.json),
                  on --data digits (the demo's) or cluttered (digits cut out of cluttered scenes); scalenet /
                  progressive in --runs grow that base for --grown-epochs, continued trains it on at depth 4 as
                  long (the control: growth or more training?); then `detect NAME --runs ...` on them
    classify-report  val top-1 of the classify-longer runs per seed, mean (std) and training seconds (markdown)
    paired NAME   the first of --runs against each other one, seed by seed on the seeds both have: differences,
                  their mean and std, wins / ties / losses and the exact two-sided sign-flip p-value (markdown);
                  NAME a detection experiment (bbox and segm mAP), or classify-longer (val top-1)
    step-cost     seconds per training step of each demo detector (one thread, batch 8, the cluttered scenes of
                  the first seed) at each --canvas size, split into the backbone's forward and the rest: what a
                  longer schedule would cost the demo

Trainings run two at a time, one torch thread each (mmscalenet.demo.jobs), as in the demo.
"""
import argparse
import glob
import itertools
import json
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
RUNS = ('base', 'scalenet', 'progressive', 'scratch', 'untied')
UNTIED_BACKBONE = 'classification/untied_backbone.pth'
CONTINUED = 'continued'   # classify-longer: the base run trained on at depth 4 for the grown runs' epochs
CONTINUED_BACKBONE = f'classification/{CONTINUED}_backbone.pth'
ORDER = RUNS + (CONTINUED,)   # the rows of report and plot
TENSORS = ('patch_embed.proj.weight', 'pos_embed', 'blocks.0.attn.qkv.weight', 'blocks.3.attn.qkv.weight',
           'blocks.7.attn.qkv.weight', 'positions.0.adapter_attn.down.weight', 'positions.3.adapter_attn.down.weight',
           'positions.7.adapter_attn.down.weight', 'positions.0.norm1.weight')


# ---- the untied copy -------------------------------------------------------------------------------------------
def untie(grown):
    """The same network without sharing: a ScaleNetViT of base depth D whose block p is a copy of the block that
    position p of ``grown`` runs; adapters, norms, rel-pos tables and embeddings copied as they are."""
    from mmscalenet.models.vit import ScaleNetViT
    cfg = grown.config()
    D = grown.plan.depth
    kw = dict(cfg, arch=dict(cfg['arch'], num_layers=D), depth=D, mapping='cyclic')
    untied = ScaleNetViT(**kw, drop_path_rate=grown.drop_path_rate, out_indices=grown.out_indices)
    untied.to(next(grown.parameters()).dtype)
    state = {k: v for k, v in grown.state_dict().items() if not k.startswith('blocks.')}
    blocks = grown.state_dict()
    for p, j in enumerate(grown.plan.sources):
        prefix = f'blocks.{j}.'
        state.update({f'blocks.{p}.{k[len(prefix):]}': v.clone() for k, v in blocks.items() if k.startswith(prefix)})
    untied.load_state_dict(state, strict=True)
    return untied


def write_untied(work_dir):
    from mmscalenet.checkpoint import load_scalenet, save_scalenet
    from mmscalenet.demo import SCALENET_BACKBONE
    grown, head = load_scalenet(osp.join(work_dir, SCALENET_BACKBONE))
    save_scalenet(untie(grown), osp.join(work_dir, UNTIED_BACKBONE), head=head)


# ---- diagnostics -----------------------------------------------------------------------------------------------
def _detector_cfg(run, options):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', f'digits_det_{"scalenet" if run == "untied" else run}.py'))
    cfg.model.backbone.init_cfg = None
    if run == 'untied':
        cfg.model.backbone.arch.num_layers = 8
    cfg.merge_from_dict(options)
    return cfg


def lr_table(rates, options):
    """``{rate: {run: {tensor: lr / base lr}}}`` from the optimizer the demo's config builds."""
    import mmscalenet  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.optim import build_optim_wrapper
    register_all_modules()
    out = {}
    for rate in rates:
        out[rate] = {}
        for run in RUNS:
            cfg = _detector_cfg(run, dict(options, **{'optim_wrapper.paramwise_cfg.decay_rate': rate}))
            model = MODELS.build(cfg.model)
            wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
            base_lr = cfg.optim_wrapper.optimizer.lr
            lrs = {}
            for group in wrapper.optimizer.param_groups:
                for name in group['param_names']:
                    lrs[name] = group['lr'] / base_lr
            out[rate][run] = {t: lrs.get('backbone.' + t) for t in TENSORS}
            out[rate][run]['neck / heads'] = lrs.get('neck.lateral_convs.0.conv.weight')
    return out


def equivalence():
    """Max |difference| between the grown model and its untied copy (outputs, and gradients: a shared tensor's
    gradient must be the sum of its untied copies')."""
    import torch

    import mmscalenet  # noqa: F401
    from mmscalenet.models.vit import ScaleNetViT
    rows = []
    for label, kw in (('demo: global attention, no rel-pos', dict(window_size=0, use_rel_pos=False)),
                      ('window 4 + global at 3, 7 + rel-pos', dict(window_size=4, global_indices=(3, 7),
                                                                  use_rel_pos=True))):
        for fused in (True, False):
            torch.manual_seed(0)
            grown = ScaleNetViT(arch=dict(embed_dims=64, num_layers=4, num_heads=4, mlp_ratio=2.0), depth=8,
                                adapter=dict(type='ParallelAdapter', bottleneck=8, sites=('attn', 'mlp')),
                                img_size=32, patch_size=4, out_type='featmap', **kw).double()
            with torch.no_grad():   # adapters and rel-pos start at zero: give every tensor a non-trivial value
                for p in grown.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
            untied = untie(grown)
            grown.set_fused(fused), untied.set_fused(fused)
            x = torch.randn(2, 3, 96, 80, dtype=torch.double)
            ya, yb = grown(x)[0], untied(x)[0]
            (ya * torch.linspace(-1, 1, ya.numel(), dtype=ya.dtype).view_as(ya)).sum().backward()
            (yb * torch.linspace(-1, 1, yb.numel(), dtype=yb.dtype).view_as(yb)).sum().backward()
            gb = dict(untied.named_parameters())
            grad_err = 0.0
            for name, p in grown.named_parameters():
                if name.startswith('blocks.'):
                    j, rest = name.split('.', 2)[1:]
                    ref = sum(gb[f'blocks.{q}.{rest}'].grad for q, s in enumerate(grown.plan.sources) if s == int(j))
                else:
                    ref = gb[name].grad
                grad_err = max(grad_err, float((p.grad - ref).abs().max() / (ref.abs().max() + 1e-30)))
            rows.append(dict(case=label, path='fused' if fused else 'reference',
                             out=float((ya - yb).abs().max()), out_scale=float(ya.abs().max()), grad_rel=grad_err))
    return rows


def _run_config(run, checkpoint, scenes, out_dir, seed, max_iters=None):
    """The demo's detection config of ``run`` (``untied``: the grown config at base depth 8; ``continued``: the
    base config, with classify-longer's continued base backbone)."""
    from mmscalenet.demo.detection import build_config
    config = dict(untied='scalenet', continued='base').get(run, run)
    cfg = build_config(config, checkpoint, scenes, out_dir, seed, max_iters)
    if run == 'untied':
        cfg.model.backbone.arch.num_layers = 8
    return cfg


def step_cost(cache, seed, style, runs, canvases, steps=10, warmup=2):
    """``[{run, canvas, step, forward, backbone_forward}]``: mean seconds per training step of the demo's detector
    (its config, pipeline and batch; random backbone weights: the cost does not depend on them), one thread."""
    import torch

    from mmengine.runner import Runner
    torch.set_num_threads(1)
    scenes = _scenes(cache, seed, style)
    rows = []
    for canvas in canvases:
        for run in runs:
            cfg = _run_config(run, None, scenes, osp.join(cache, 'step_cost'), seed)
            cfg.model.backbone.init_cfg = None
            cfg.work_dir = osp.join(cache, 'step_cost', f'{run}_{canvas}')
            cfg.train_dataloader.num_workers = 0
            cfg.train_dataloader.persistent_workers = False
            for t in cfg.train_dataloader.dataset.pipeline:
                if t['type'] == 'RandomResize':
                    t['scale'] = (canvas, canvas)
                elif t['type'] == 'RandomCrop':
                    t['crop_size'] = (canvas, canvas)
            runner = Runner.from_cfg(cfg)
            model, wrapper = runner.model.train(), runner.build_optim_wrapper(cfg.optim_wrapper)
            spent = dict(backbone_forward=0.0)
            forward = model.backbone.forward

            def timed(*a, forward=forward, **k):
                t = time.perf_counter()
                out = forward(*a, **k)
                spent['backbone_forward'] += time.perf_counter() - t
                return out
            model.backbone.forward = timed
            batches = iter(runner.train_dataloader)
            total = fwd = 0.0
            for i in range(warmup + steps):
                data = next(batches)
                if i == warmup:
                    total = fwd = spent['backbone_forward'] = 0.0
                t0 = time.perf_counter()
                loss, _ = model.parse_losses(model(**model.data_preprocessor(data, True), mode='loss'))
                t1 = time.perf_counter()
                wrapper.update_params(loss)
                total += time.perf_counter() - t0
                fwd += t1 - t0
            rows.append(dict(run=run, canvas=canvas, step=total / steps, forward=fwd / steps,
                             backbone_forward=spent['backbone_forward'] / steps))
    return rows


# ---- experiments -----------------------------------------------------------------------------------------------
def _scenes(cache, seed, style):
    from mmscalenet.demo.detection import NUM_TRAIN, NUM_VAL
    from mmscalenet.demo.digit_scenes import generate
    return generate(osp.join(cache, f'scenes_{style}', f'seed{seed}'), num_train=NUM_TRAIN, num_val=NUM_VAL,
                    seed=seed, style=style)


def _classify_job(cache, seed):
    from mmscalenet.demo.classification import run
    work = osp.join(cache, f'seed{seed}')
    if not osp.isfile(osp.join(work, 'summary.json')):
        run(work, seed)
    write_untied(work)
    return seed


LONGER_RUNS = ('base', 'scratch', 'scalenet', 'progressive', CONTINUED)
FROM_BASE = ('scalenet', 'progressive', CONTINUED)


def _classify_longer_job(cache, seed, run, epochs, data='digits'):
    """One classification run of the demo's recipe for ``epochs`` epochs (warm-up kept, cosine to the new end) on
    ``data``: the demo's digits, or ``'cluttered'`` (``ScaleNetClutteredDigits``: digits cut out of cluttered
    scenes, 8000 train / 1000 val). A grown run (scalenet / progressive) starts from this seed's base backbone, and
    so does ``continued``: the base model (depth 4) trained on for as many epochs as a grown run, the control that
    tells growth from more training."""
    import mmscalenet  # noqa: F401  (registers the modules in the job's process)
    from mmscalenet.demo import classification as cls
    work = osp.join(cache, f'seed{seed}')
    init = osp.join(work, cls.BACKBONES['base']) if run in FROM_BASE else None
    cfg = cls._config('base' if run == CONTINUED else run, work, seed, init_checkpoint=init, name=run)
    cfg.train_cfg.max_epochs = epochs
    warmup, cosine = cfg.param_scheduler
    cosine.update(T_max=epochs - warmup['end'], end=epochs)
    cfg.default_hooks.checkpoint.interval = epochs
    if data == 'cluttered':
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            loader.dataset = dict(type='ScaleNetClutteredDigits', split=loader.dataset.split,
                                  pipeline=loader.dataset.pipeline)
    result = cls._train(cfg)
    name = CONTINUED_BACKBONE if run == CONTINUED else cls.BACKBONES[run]
    cls._save_backbone(result.pop('model'), osp.join(work, name))
    return dict(result, run=run, seed=seed, data=data)


def classify_longer(cache, seeds, runs, epochs, data='digits', grown_epochs=None):
    """``runs`` of every seed; a run from the base (scalenet, progressive, continued) trains ``grown_epochs``
    (default a third of ``epochs``, the paper's ratio) after the same seed's base run, or from the base backbone
    already in the cache when base is not in ``runs``. Adds its rows to CACHE/seed<k>/classify_longer.json."""
    from mmscalenet.demo.jobs import run_graph
    grown_epochs = grown_epochs or max(1, epochs // 3)
    jobs = []
    for seed in seeds:   # the long ones first; a run from the base after its base
        for run in sorted(runs, key=lambda r: (r in FROM_BASE, r != 'scratch')):
            after = (f'base/{seed}',) if run in FROM_BASE and 'base' in runs else ()
            jobs.append((f'{run}/{seed}', _classify_longer_job,
                         (cache, seed, run, grown_epochs if run in FROM_BASE else epochs, data), after))
    done = run_graph(jobs)
    for seed in seeds:
        path = osp.join(cache, f'seed{seed}', 'classify_longer.json')
        rows = {}
        if osp.isfile(path):
            with open(path) as f:
                rows = json.load(f)
        rows.update({run: {k: v for k, v in done[f'{run}/{seed}'].items() if k not in ('run', 'seed')}
                     for run in runs})
        with open(path, 'w') as f:
            json.dump(rows, f, indent=1)
        print(f'seed {seed}: ' + ', '.join(f'{run} {r["epochs"]} ep top-1 {r["top1"]:.2f}' for run, r in rows.items()))


def classify_report(cache, seeds, runs):
    """Markdown: val top-1 of each classify-longer run per seed (CACHE/seed<k>/classify_longer.json), mean (std)."""
    rows = {}
    for seed in seeds:
        with open(osp.join(cache, f'seed{seed}', 'classify_longer.json')) as f:
            rows[seed] = json.load(f)
    runs = [r for r in runs if all(r in rows[s] for s in seeds)]
    lines = ['| seed | ' + ' | '.join(f'{r} (depth {rows[seeds[0]][r]["depth"]}, {rows[seeds[0]][r]["epochs"]} ep)'
                                     for r in runs) + ' |', '| --- |' + ' ---: |' * len(runs)]
    for seed in seeds:
        lines.append(f'| {seed} | ' + ' | '.join(f'{rows[seed][r]["top1"]:.2f}' for r in runs) + ' |')
    top1 = {r: [rows[s][r]['top1'] for s in seeds] for r in runs}
    spread = {r: statistics.stdev(v) if len(v) > 1 else 0.0 for r, v in top1.items()}
    lines.append('| mean (std) | ' + ' | '.join(f'{statistics.mean(top1[r]):.2f} ({spread[r]:.2f})' for r in runs)
                 + ' |')
    lines.append('| train s (mean) | ' + ' | '.join(
        f'{statistics.mean(rows[s][r]["train_seconds"] for s in seeds):.0f}' for r in runs) + ' |')
    return '\n'.join(lines)


def _detect_job(*args):
    """One detector (:func:`_train_detector`); a failure's traceback is written next to the results."""
    try:
        return _train_detector(*args)
    except BaseException:
        import traceback
        run, cache, name, seed = args[:4]
        with open(osp.join(cache, name, f'seed{seed}', f'{run}.error'), 'w') as f:
            f.write(traceback.format_exc())
        raise


def _train_detector(run, cache, name, seed, max_iters, options, eval_every, style):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from mmscalenet.demo import ROWS
    ckpt = dict(ROWS, untied=UNTIED_BACKBONE, continued=CONTINUED_BACKBONE)
    out_dir = osp.join(cache, name, f'seed{seed}')
    cfg = _run_config(run, osp.join(cache, f'seed{seed}', ckpt[run]), _scenes(cache, seed, style), out_dir, seed,
                      max_iters)
    cfg.work_dir = osp.join(out_dir, run)
    cfg.merge_from_dict(options)
    curve = []
    if eval_every:
        cfg.val_dataloader, cfg.val_evaluator = cfg.test_dataloader, cfg.test_evaluator
        cfg.val_cfg = dict(type='ValLoop')
        cfg.train_cfg.val_interval = eval_every

    class _Curve(Hook):
        def after_val_epoch(self, runner, metrics=None):
            # an empty prediction set gives no COCO figures: 0 (no box found)
            curve.append(dict(iter=runner.iter, **{k: float((metrics or {}).get(f'coco/{k}', 0.0))
                                                   for k in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP')}))

    runner = Runner.from_cfg(cfg)
    runner.register_hook(_Curve(), priority='LOWEST')
    t0 = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - t0
    if curve and curve[-1]['iter'] == cfg.train_cfg.max_iters:   # the last validation is the test (same data)
        final = {k: v for k, v in curve[-1].items() if k != 'iter'}
    else:
        metrics = runner.test()
        final = {k: float(metrics[f'coco/{k}']) for k in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP')}
    result = dict(run=run, seed=seed, name=name, options=options, style=style, iters=cfg.train_cfg.max_iters,
                  train_seconds=round(seconds, 1), curve=curve, **final)
    with open(osp.join(out_dir, f'{run}.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


def detect(args):
    from mmscalenet.demo.jobs import run_jobs
    options = dict(args.cfg_options or {})
    os.makedirs(osp.join(args.cache, args.name), exist_ok=True)
    for seed in args.seeds:   # scenes once per seed, before the jobs (they share them)
        _scenes(args.cache, seed, args.style)
    jobs = [(f'{run}/{seed}', _detect_job, (run, args.cache, args.name, seed, args.max_iters, options,
                                             args.eval_every, args.style))
            for seed in args.seeds for run in args.runs   # seed by seed: a cut-off study keeps whole seeds
            if not osp.isfile(osp.join(args.cache, args.name, f'seed{seed}', f'{run}.json'))]
    for seed in args.seeds:
        os.makedirs(osp.join(args.cache, args.name, f'seed{seed}'), exist_ok=True)
    run_jobs(jobs)
    print(report(args.cache, [args.name]))


def _results(cache, name):
    out = {}
    for path in sorted(glob.glob(osp.join(cache, name, 'seed*', '*.json'))):
        with open(path) as f:
            r = json.load(f)
        out.setdefault(r['run'], {})[r['seed']] = r
    return out


def report(cache, names):
    lines = ['| experiment | backbone | seeds | bbox mAP (per seed) | bbox mAP mean +- std | AP50 mean | '
             'segm mAP mean +- std |', '| --- | --- | --- | --- | ---: | ---: | ---: |']
    for name in names:
        for run, per_seed in sorted(_results(cache, name).items(), key=lambda kv: ORDER.index(kv[0])):
            seeds = sorted(per_seed)

            def stat(key, seeds=seeds, per_seed=per_seed):
                v = [per_seed[s][key] for s in seeds]
                return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), v
            b, b50, s = stat('bbox_mAP'), stat('bbox_mAP_50'), stat('segm_mAP')
            lines.append(f'| {name} | {run} | {" ".join(map(str, seeds))} | '
                         f'{" / ".join(f"{v:.3f}" for v in b[2])} | {b[0]:.3f} +- {b[1]:.3f} | {b50[0]:.3f} | '
                         f'{s[0]:.3f} +- {s[1]:.3f} |')
    return '\n'.join(lines)


def sign_flip_p(diffs):
    """Exact two-sided p-value of the paired sign-flip (permutation) test: the share of the 2^n sign patterns whose
    mean difference is at least as far from 0 as the observed one. No distribution assumed; with n seeds it cannot
    go below 2 / 2^n (.031 for six seeds, .25 for three)."""
    observed = abs(statistics.fmean(diffs)) - 1e-12
    patterns = list(itertools.product((1, -1), repeat=len(diffs)))
    return sum(abs(statistics.fmean(d * s for d, s in zip(diffs, signs))) >= observed
               for signs in patterns) / len(patterns)


def paired_stats(first, other):
    """``first`` and ``other`` ({seed: value}) on the seeds both have: per-seed differences first - other, their
    mean and std, wins / ties / losses of ``first`` and :func:`sign_flip_p`."""
    seeds = sorted(set(first) & set(other))
    if len(seeds) < 2:
        raise ValueError(f'a paired comparison needs two seeds both runs have, not {seeds}')
    diffs = [first[s] - other[s] for s in seeds]
    return dict(seeds=seeds, diffs=diffs, mean=statistics.fmean(diffs), std=statistics.stdev(diffs),
                wins=sum(d > 0 for d in diffs), ties=sum(d == 0 for d in diffs), losses=sum(d < 0 for d in diffs),
                p=sign_flip_p(diffs))


def _paired_values(cache, name, runs):
    """{metric: {run: {seed: value}}} of a detection experiment, or of the classify-longer rows (NAME
    'classify-longer': CACHE/seed<k>/classify_longer.json)."""
    if name != 'classify-longer':
        res = _results(cache, name)
        missing = [r for r in runs if r not in res]
        if missing:
            raise ValueError(f'experiment {name!r} in {cache} has no results of {missing}')
        return {m: {r: {s: res[r][s][m] for s in res[r]} for r in runs} for m in ('bbox_mAP', 'segm_mAP')}
    top1 = {r: {} for r in runs}
    for path in sorted(glob.glob(osp.join(cache, 'seed*', 'classify_longer.json'))):
        seed = int(osp.basename(osp.dirname(path))[len('seed'):])
        with open(path) as f:
            rows = json.load(f)
        for r in runs:
            if r in rows:
                top1[r][seed] = rows[r]['top1']
    return {'top1': top1}


def paired(cache, name, runs):
    """Markdown: :func:`paired_stats` of runs[0] against each of runs[1:], per metric of experiment ``name``."""
    if len(runs) < 2:
        raise ValueError('paired: --runs needs two runs or more (the first is compared with each other one)')
    lines = ['| metric | pair | seeds | difference per seed | mean (std) | wins / ties / losses | sign-flip p |',
             '| --- | --- | --- | --- | ---: | ---: | ---: |']
    for metric, values in _paired_values(cache, name, runs).items():
        digits = 2 if metric == 'top1' else 3
        for other in runs[1:]:
            st = paired_stats(values[runs[0]], values[other])
            lines.append(f'| {metric} | {runs[0]} - {other} | {" ".join(map(str, st["seeds"]))} | '
                         f'{" / ".join(f"{d:+.{digits}f}" for d in st["diffs"])} | '
                         f'{st["mean"]:+.{digits}f} ({st["std"]:.{digits}f}) | '
                         f'{st["wins"]} / {st["ties"]} / {st["losses"]} | {st["p"]:.3f} |')
    return '\n'.join(lines)


def plot(cache, name, out):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, per_seed in sorted(_results(cache, name).items(), key=lambda kv: ORDER.index(kv[0])):
        curves = [r['curve'] for r in per_seed.values() if r['curve']]
        if not curves:
            continue
        iters = [c['iter'] for c in curves[0]]
        mean = [statistics.fmean(c[i]['bbox_mAP'] for c in curves) for i in range(len(iters))]
        lo = [min(c[i]['bbox_mAP'] for c in curves) for i in range(len(iters))]
        hi = [max(c[i]['bbox_mAP'] for c in curves) for i in range(len(iters))]
        ax.plot(iters, mean, marker='o', label=f'{run} (mean of {len(curves)} seeds)')
        ax.fill_between(iters, lo, hi, alpha=0.15)
    ax.set_xlabel('training iteration (batch 8)')
    ax.set_ylabel('val bbox mAP')
    ax.set_title(f'Digit-scene detection: {name}')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def seeds_json(cache, name, seeds, out):
    """tools/demo.py's seeds.json (mean, std, range per figure) from the study's runs of the demo's recipe."""
    import platform

    import torch
    tools = osp.join(ROOT, 'tools')
    sys.path.insert(0, tools)
    from demo import spread
    det = _results(cache, name)
    summaries = {}
    for seed in seeds:
        with open(osp.join(cache, f'seed{seed}', 'summary.json')) as f:
            summary = json.load(f)
        summary['detection'] = {run: det[run][seed] for run in ('base', 'scalenet', 'scratch')}
        summaries[seed] = summary
    result = dict(seeds=list(seeds), stats=spread(summaries),
                  machine=f'{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch '
                          f'{torch.__version__}, 1 thread(s) per training',
                  command=f'python scripts/detection_study.py classify --seeds {" ".join(map(str, seeds))}; '
                          f'python scripts/detection_study.py detect {name} ...; '
                          f'python scripts/detection_study.py seeds-json {name}',
                  note='the demo\'s configs and seeds, run by scripts/detection_study.py (same jobs, threads and '
                       'seeds as tools/demo.py), not by tools/demo.py --seeds')
    with open(out, 'w') as f:
        json.dump(result, f, indent=2)
    return result


def main(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('command', choices=['lr-table', 'equivalence', 'classify', 'detect', 'report', 'plot',
                                        'seeds-json', 'step-cost', 'classify-longer', 'classify-report', 'paired'])
    p.add_argument('names', nargs='*', help='experiment name(s) (detect / plot: one)')
    p.add_argument('--cache', default='work_dirs/detection_study')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--runs', nargs='+', choices=ORDER, default=['base', 'scalenet', 'scratch'])
    p.add_argument('--max-iters', type=int, default=None)
    p.add_argument('--eval-every', type=int, default=0)
    p.add_argument('--style', default='cluttered')
    p.add_argument('--rates', type=float, nargs='+', default=[0.9, 1.0])
    p.add_argument('--out', default='docs/detection_transfer_curves.png')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    p.add_argument('--canvas', type=int, nargs='+', default=[96, 64], help='step-cost: scene sizes to time')
    p.add_argument('--epochs', type=int, default=36, help='classify-longer: epochs of the base and scratch runs')
    p.add_argument('--grown-epochs', type=int, default=None,
                   help='classify-longer: epochs of a run from the base (scalenet, progressive, continued; default a '
                        'third of --epochs)')
    p.add_argument('--data', choices=['digits', 'cluttered'], default='digits',
                   help="classify-longer: the demo's digits, or digits cut out of cluttered scenes")
    a = p.parse_args(argv)
    if a.command == 'lr-table':
        table = lr_table(a.rates, dict(a.cfg_options or {}))
        print('\n| decay_rate | tensor (lr / base lr) | ' + ' | '.join(RUNS) + ' |\n| --- | --- |'
              + ' ---: |' * len(RUNS))
        for rate, per_run in table.items():
            for t in list(TENSORS) + ['neck / heads']:
                cells = [per_run[r][t] for r in RUNS]
                if any(c is not None for c in cells):
                    print(f'| {rate:g} | `{t}` | ' + ' | '.join('-' if c is None else f'{c:.3g}' for c in cells) + ' |')
    elif a.command == 'equivalence':
        for row in equivalence():
            print(json.dumps(row))
    elif a.command == 'classify':
        for seed in a.seeds:
            _classify_job(a.cache, seed)
    elif a.command == 'detect':
        a.name = a.names[0]
        detect(a)
    elif a.command == 'report':
        print(report(a.cache, a.names))
    elif a.command == 'classify-longer':
        missing = [f'seed{s}' for s in a.seeds if set(a.runs) & set(FROM_BASE) and 'base' not in a.runs
                   and not osp.isfile(osp.join(a.cache, f'seed{s}', 'classification', 'base_backbone.pth'))]
        if set(a.runs) - set(LONGER_RUNS) or missing:
            p.error(f'classify-longer: --runs from {" ".join(LONGER_RUNS)}; {", ".join(FROM_BASE)} start from the base '
                    f'run (in --runs, or its backbone in CACHE/seed<k>/classification/; missing: {missing})')
        classify_longer(a.cache, a.seeds, a.runs, a.epochs, a.data, a.grown_epochs)
    elif a.command == 'classify-report':
        print(classify_report(a.cache, a.seeds, a.runs))
    elif a.command == 'paired':
        if len(a.names) != 1:
            p.error('paired: one NAME (a detection experiment, or classify-longer)')
        try:
            print(paired(a.cache, a.names[0], a.runs))
        except ValueError as e:
            p.error(str(e))
    elif a.command == 'step-cost':
        rows = step_cost(a.cache, a.seeds[0], a.style, a.runs, a.canvas)
        print('| canvas | backbone | s / step | forward | backbone forward | rest of the step |\n'
              '| ---: | --- | ---: | ---: | ---: | ---: |')
        for r in rows:
            print(f'| {r["canvas"]} | {r["run"]} | {r["step"]:.3f} | {r["forward"]:.3f} | {r["backbone_forward"]:.3f} '
                  f'| {r["step"] - r["backbone_forward"]:.3f} |')
        for canvas in a.canvas:
            steps = [r['step'] for r in rows if r['canvas'] == canvas]
            print(f'canvas {canvas}: {len(steps)} detectors x {a.max_iters or 600} steps, two at a time on two '
                  f'cores: {sum(steps) * (a.max_iters or 600) / 2 / 60:.1f} min of wall time (training only)')
    elif a.command == 'seeds-json':
        sys.path.insert(0, osp.join(ROOT, 'tools'))
        from demo import spread_table
        print(spread_table(seeds_json(a.cache, a.names[0], a.seeds, a.out)['stats'], a.seeds))
    else:
        plot(a.cache, a.names[0], a.out)


if __name__ == '__main__':
    main()
