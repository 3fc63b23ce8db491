"""Top-k accuracy for ``ScaleNetClassifier`` predictions (logged as ``accuracy/top1``, ``accuracy/top5``)."""
from typing import Any, Dict, List, Sequence

import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """Percentage of rows of ``scores`` (N, K) whose label is among the k highest scores, for each k.

    k larger than the number of classes counts every sample as correct (as in mmpretrain).
    """
    if scores.dim() != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f'expected scores (N, K) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}')
    if scores.shape[0] == 0:
        raise ValueError('no predictions to evaluate')
    maxk = min(max(topk), scores.shape[1])
    pred = scores.topk(maxk, dim=1).indices
    hit = pred == labels.view(-1, 1)
    return {k: float(hit[:, :min(k, maxk)].any(dim=1).float().mean() * 100.0) for k in topk}


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Top-k accuracy (%) over the whole evaluation set.

    Reads each prediction's ``pred_score`` (K,) and ``gt_label`` (1,), as ``ScaleNetClassifier.predict`` writes
    them. Results: ``{prefix}/top{k}``.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu', prefix: str = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in ((topk,) if isinstance(topk, int) else topk))
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'topk must be positive integers, got {topk!r}')

    @staticmethod
    def _get(sample: Any, key: str):
        return sample[key] if isinstance(sample, dict) else getattr(sample, key)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            score = self._get(sample, 'pred_score')
            label = self._get(sample, 'gt_label')
            self.results.append((torch.as_tensor(score).detach().cpu().float(),
                                 int(torch.as_tensor(label).reshape(-1)[0])))

    def compute_metrics(self, results: List[Any]) -> Dict[str, float]:
        scores = torch.stack([s for s, _ in results])
        labels = torch.tensor([label for _, label in results])
        return {f'top{k}': v for k, v in topk_accuracy(scores, labels, self.topk).items()}
