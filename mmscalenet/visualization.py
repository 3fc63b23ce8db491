"""Drawing classification results: an image with its top-k classes written on it (OpenMMLab glue).

Used by ``ImageClassificationInferencer`` (``img_out_dir``), by ``ScaleNetClsVisualizationHook``, which
``tools/test.py --show-dir`` adds to classification configs, and by ``ScaleNetClsVisualizer``, the classification
configs' ``visualizer`` (what mmdet's ``browse_dataset.py`` draws with).
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import HOOKS, VISUALIZERS
from mmengine.hooks import Hook
from mmengine.visualization import Visualizer


def top_classes(scores: torch.Tensor, k: int, classes: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """``[dict(label, class, score)]`` of the ``k`` highest ``scores`` (names from ``classes`` when known)."""
    scores = scores.float().cpu()
    values, labels = torch.topk(scores, min(k, scores.numel()))
    out = []
    for v, i in zip(values.tolist(), labels.tolist()):
        name = classes[i] if classes and 0 <= i < len(classes) else str(i)
        out.append({'label': int(i), 'class': name, 'score': float(v)})
    return out


def draw_lines(vis: Visualizer, image: np.ndarray, lines: Sequence[str], min_side: int = 256) -> np.ndarray:
    """An RGB uint8 copy of ``image`` (enlarged to at least ``min_side``) with ``lines`` of text drawn on it by
    ``vis``."""
    img = np.ascontiguousarray(image)
    scale = max(1, int(np.ceil(min_side / max(img.shape[:2]))))   # small images: enlarge so the text fits
    if scale > 1:
        img = np.kron(img, np.ones((scale, scale, 1), dtype=img.dtype))
    vis.set_image(img)
    if lines:
        vis.draw_texts('\n'.join(lines), np.array([4, 4]), font_sizes=max(8, min(img.shape[:2]) // 20),
                       colors='white', bboxes=dict(facecolor='black', alpha=0.6, pad=2, edgecolor='none'))
    return vis.get_image()


def draw_top_classes(image: np.ndarray, top: Sequence[Dict[str, Any]], min_side: int = 256) -> np.ndarray:
    """An RGB uint8 copy of ``image`` (enlarged to at least ``min_side``) with ``class: score`` lines drawn on it."""
    return draw_lines(Visualizer.get_instance('mmscalenet-classification'), image,
                      [f'{t["class"]}: {t["score"]:.3f}' for t in top], min_side)


@HOOKS.register_module()
class ScaleNetClsVisualizationHook(Hook):
    """Save every test image with its top-k classes into ``out_dir`` (relative paths: under the run's log dir).

    The image is read from ``img_path`` when that is a file, else taken from the model input (uint8).
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
            if path and osp.isfile(path):   # images held in memory have a name there, not a file
                img = np.asarray(Image.open(path).convert('RGB'))
                name = osp.splitext(osp.basename(path))[0]
            else:
                img = inputs[i].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
                name = f'{sample.metainfo.get("sample_idx", batch_idx * len(outputs) + i):06d}'
            drawn = draw_top_classes(img, top_classes(sample.pred_score, self.topk, self.classes))
            Image.fromarray(drawn).save(osp.join(self.out_dir, f'{name}.png'))


@VISUALIZERS.register_module()
class ScaleNetClsVisualizer(Visualizer):
    """mmengine's ``Visualizer`` with mmdet's ``add_datasample`` signature for classification samples: the image
    with its ground-truth class (``gt_label``) and, when the sample has scores, its top-k predicted classes.

    Built from a config without a ``name`` (mmdet's ``browse_dataset.py`` builds ``cfg.visualizer`` directly,
    where mmengine's ``Visualizer`` demands one), it takes ``'mmscalenet_cls_visualizer'``.
    """

    @classmethod
    def get_instance(cls, name: str = 'mmscalenet_cls_visualizer', **kwargs: Any) -> 'ScaleNetClsVisualizer':
        return super().get_instance(name, **kwargs)

    def lines(self, data_sample: Any, draw_gt: bool = True, draw_pred: bool = True, topk: int = 5) -> List[str]:
        """The text drawn for ``data_sample``: ``gt: <class>``, then ``<class>: <score>`` per predicted class."""
        classes = (self.dataset_meta or {}).get('classes')
        out = []
        gt = getattr(data_sample, 'gt_label', None) if data_sample is not None else None
        if draw_gt and gt is not None:
            i = int(np.asarray(gt).reshape(-1)[0])
            out.append(f'gt: {classes[i] if classes and 0 <= i < len(classes) else i}')
        scores = getattr(data_sample, 'pred_score', None) if data_sample is not None else None
        if draw_pred and scores is not None:
            scores = torch.as_tensor(np.asarray(scores))
            out += [f'{t["class"]}: {t["score"]:.3f}' for t in top_classes(scores, topk, classes)]
        return out

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Any = None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0, out_file: Optional[str] = None,
                       step: int = 0, topk: int = 5, **kwargs: Any) -> None:
        """Draw ``image`` (RGB) with :meth:`lines`; show it, write it to ``out_file``, or hand it to the vis
        backends (``name``, ``step``) as mmdet's visualizers do."""
        drawn = draw_lines(self, image, self.lines(data_sample, draw_gt, draw_pred, topk))
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            from PIL import Image
            os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
            Image.fromarray(drawn).save(out_file)
        else:
            self.add_image(name, drawn, step)
