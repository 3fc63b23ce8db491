#!/usr/bin/env python
"""The embedded ScaleNet demo (what `make demo` runs): CPU only, no downloads.

1. Classification: a small ViT of depth L is trained on scikit-learn's handwritten digits ("pretrained"), grown to
   2L with ScaleNet (shared weights + adapters) and trained for a third of the epochs, against an ordinary (untied,
   no-adapter) ViT of depth 2L trained from scratch for the full epochs.
2. Detection: scenes of several digits (COCO format, boxes + masks); a small Mask R-CNN is trained with the depth-L
   and the ScaleNet 2L backbones from step 1 and evaluated with mmdet's CocoMetric.

Writes summary.json, classification.md, detection.md and PNGs (accuracy curves, predictions) into --work-dir.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo', help='output folder (default work_dirs/demo)')
    p.add_argument('--only', choices=['classification', 'detection'],
                   help='run one half (detection needs the classification half\'s backbones in --work-dir)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.time()
    if args.only in (None, 'classification'):
        from mmscalenet.demo.classification import run as run_classification
        print('=== classification half: digits, base L vs ScaleNet 2L vs scratch 2L ===', flush=True)
        run_classification(args.work_dir, seed=args.seed)
    if args.only in (None, 'detection'):
        from mmscalenet.demo.detection import run as run_detection
        print('=== detection half: digit scenes, Mask R-CNN with the base and the ScaleNet backbones ===',
              flush=True)
        run_detection(args.work_dir, seed=args.seed)
    from mmscalenet.demo import SUMMARY
    with open(osp.join(args.work_dir, SUMMARY)) as f:
        summary = json.load(f)
    print(f'\n=== demo finished in {time.time() - t0:.0f} s; results in {args.work_dir} ===')
    for name in ('classification.md', 'detection.md'):
        path = osp.join(args.work_dir, name)
        if osp.exists(path):
            print(open(path).read())
    return summary


if __name__ == '__main__':
    main()
