"""Test-only modules for the reliability tests (tiny ScaleNet classifier, synthetic data, a kill switch).

Registered into mmdet's registries under ``Rel*`` names so they never clash with the project's own modules.
Imported by ``tests/configs/rel_tiny_cls.py`` through ``custom_imports`` (the repository root is on sys.path when
``tools/train.py`` runs).
"""
import os
import signal

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS
from torch.utils.data import Dataset

from mmscalenet.models.vit import ScaleNetViT


@MODELS.register_module()
class RelTinyClassifier(BaseModel):
    """``ScaleNetViT`` + linear head; ``forward(inputs, labels, mode)`` in mmengine's convention."""

    def __init__(self, backbone, num_classes=4, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        backbone = dict(backbone)
        backbone.pop('type', None)
        self.backbone = ScaleNetViT(**backbone)
        self.head = torch.nn.Linear(self.backbone.embed_dims, num_classes)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0])
        if mode == 'loss':
            return dict(loss_cls=F.cross_entropy(logits, labels) * float(os.environ.get('REL_LOSS_SCALE', '1')))
        if mode == 'predict':
            return [dict(pred=int(p), label=int(t)) for p, t in zip(logits.argmax(1), labels)]
        return logits


@DATASETS.register_module()
class RelSyntheticDataset(Dataset):
    """``length`` deterministic (image, label) pairs: item i depends only on (seed, i)."""

    def __init__(self, length=8, num_classes=4, img_size=32, seed=0, ann_file=None):
        self.length, self.num_classes, self.img_size, self.seed = length, num_classes, img_size, seed
        if ann_file is not None:   # optional list file: one integer per line (to test missing / corrupt files)
            if not os.path.isfile(ann_file):
                raise FileNotFoundError(f'annotation file not found: {ann_file}')
            with open(ann_file) as f:
                lines = [line.strip() for line in f if line.strip()]
            for n, line in enumerate(lines, 1):
                if not line.isdigit():
                    raise ValueError(f'{ann_file}, line {n}: expected an integer, got {line[:40]!r}')
            self.length = len(lines)
        self.metainfo = dict(classes=tuple(f'c{i}' for i in range(num_classes)))

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 100003 + i)
        label = i % self.num_classes
        img = torch.randn(3, self.img_size, self.img_size, generator=g) + 0.5 * label
        return dict(inputs=img, labels=label)


@METRICS.register_module()
class RelTinyAccuracy(BaseMetric):
    default_prefix = 'rel'

    def process(self, data_batch, data_samples):
        self.results.extend(int(s['pred'] == s['label']) for s in data_samples)

    def compute_metrics(self, results):
        return dict(accuracy=100.0 * sum(results) / max(len(results), 1))


@HOOKS.register_module()
class RelKillSwitchHook(Hook):
    """SIGKILLs its own process, for crash tests, driven by environment variables:

    * ``REL_KILL_AT_ITER=N``: right after training iteration N (1-based) finishes.
    * ``REL_KILL_IN_SAVE=N``: while saving the checkpoint of epoch N, after the data is written to the temporary
      file and before it is renamed (the moment a non-atomic writer would have left half a file).
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if os.environ.get('REL_KILL_AT_ITER') and runner.iter + 1 == int(os.environ['REL_KILL_AT_ITER']):
            os.kill(os.getpid(), signal.SIGKILL)

    def before_save_checkpoint(self, runner, checkpoint):
        if os.environ.get('REL_KILL_IN_POINTER') and checkpoint['meta'].get('epoch') == int(
                os.environ['REL_KILL_IN_POINTER']):
            real_replace = os.replace

            def replace_pointer(src, dst):
                if os.path.basename(str(dst)) == 'last_checkpoint':
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_replace(src, dst)

            os.replace = replace_pointer
        if os.environ.get('REL_KILL_IN_SAVE') and checkpoint['meta'].get('epoch') == int(
                os.environ['REL_KILL_IN_SAVE']):
            real_replace = os.replace

            def replace(src, dst):
                if str(dst).endswith('.pth'):
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_replace(src, dst)

            os.replace = replace
