"""Drawing classification results: an image with its top-k classes written on it (OpenMMLab glue).

Used by ``ImageClassificationInferencer`` (``img_out_dir``) and by ``ScaleNetClsVisualizationHook``, which
``tools/test.py --show-dir`` adds to classification configs.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def top_classes(scores: torch.Tensor, k: int, classes: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """``[dict(label, class, score)]`` of the ``k`` highest ``scores`` (names from ``classes`` when known)."""
    scores = scores.float().cpu()
    values, labels = torch.topk(scores, min(k, scores.numel()))
    out = []
    for v, i in zip(values.tolist(), labels.tolist()):
        name = classes[i] if classes and 0 <= i < len(classes) else str(i)
        out.append({'label': int(i), 'class': name, 'score': float(v)})
    return out


def draw_top_classes(image: np.ndarray, top: Sequence[Dict[str, Any]], min_side: int = 256) -> np.ndarray:
    """An RGB uint8 copy of ``image`` (enlarged to at least ``min_side``) with ``class: score`` lines drawn on it."""
    from mmengine.visualization import Visualizer
    img = np.ascontiguousarray(image)
    scale = max(1, int(np.ceil(min_side / max(img.shape[:2]))))   # small images: enlarge so the text fits
    if scale > 1:
        img = np.kron(img, np.ones((scale, scale, 1), dtype=img.dtype))
    vis = Visualizer.get_instance('mmscalenet-classification')
    vis.set_image(img)
    lines = [f'{t["class"]}: {t["score"]:.3f}' for t in top]
    vis.draw_texts('\n'.join(lines), np.array([4, 4]), font_sizes=max(8, min(img.shape[:2]) // 20), colors='white',
                   bboxes=dict(facecolor='black', alpha=0.6, pad=2, edgecolor='none'))
    return vis.get_image()


@HOOKS.register_module()
class ScaleNetClsVisualizationHook(Hook):
    """Save every test image with its top-k classes into ``out_dir`` (relative paths: under the run's log dir).

    The image is read from ``img_path`` when the sample has one, else taken from the model input (uint8).
    """

    def __init__(self, out_dir: str = 'vis', topk: int = 5):
        self.out_dir, self.topk = out_dir, int(topk)

    def before_test(self, runner) -> None:
        if not osp.isabs(self.out_dir):
            self.out_dir = osp.join(runner.log_dir, self.out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        meta = getattr(runner.test_dataloader.dataset, 'metainfo', None) or {}
        self.classes = meta.get('classes')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        from PIL import Image
        inputs = (data_batch or {}).get('inputs', [])
        for i, sample in enumerate(outputs or []):
            path = sample.metainfo.get('img_path')
            if path:
                img = np.asarray(Image.open(path).convert('RGB'))
                name = osp.splitext(osp.basename(path))[0]
            else:
                img = inputs[i].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
                name = f'{sample.metainfo.get("sample_idx", batch_idx * len(outputs) + i):06d}'
            drawn = draw_top_classes(img, top_classes(sample.pred_score, self.topk, self.classes))
            Image.fromarray(drawn).save(osp.join(self.out_dir, f'{name}.png'))
