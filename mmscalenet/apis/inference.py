"""Image classification inference with a trained ``ScaleNetClassifier`` (mmengine ``BaseInferencer``).

    from mmscalenet.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer('configs/demo/digits_cls_scalenet.py', 'work_dirs/x/epoch_6.pth')
    result = inferencer('images/', topk=3, pred_out_file='preds.json', img_out_dir='drawn/')
    result['predictions'][0]   # {'img_path': ..., 'pred_label': 7, 'pred_class': '7', 'pred_score': 0.93,
                               #  'topk': [{'label': 7, 'class': '7', 'score': 0.93}, ...]}

Inputs are image files, folders of images (every image file directly in the folder, sorted), or RGB ``uint8``
arrays (H, W, 3), or a list of these. Each image is read as RGB and brought to the backbone's input size the way
the config's test pipeline does (resize + centre crop); configs whose test pipeline starts from in-memory arrays
(the embedded digits) get a file reader and a resize to the backbone's ``img_size`` in front of it. Class names
come from ``classes=``, else the checkpoint's ``dataset_meta`` (written by training), else the config's test
dataset (``classes`` / ``metainfo``), else the label indices; ImageNet's WordNet ids (``n01440764``) are given as
the words they stand for (``tench``).
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.infer import BaseInferencer
from mmengine.registry import init_default_scope

from ..checkpoint import CheckpointError, safe_mmengine_io
from ..visualization import draw_top_classes, top_classes

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class ImageClassificationInferencer(BaseInferencer):
    """Top-k classes (with names) of images, as a dict, a JSON file and drawn images.

    Args:
        model: config file (or Config) of a ``ScaleNetClassifier``.
        weights: checkpoint written by training (``tools/train.py``); loaded strictly.
        device: 'cpu', 'cuda:0', ... (default: mmengine's choice).
        classes: class names in label order (overrides the checkpoint's and the config's).

    Call arguments: ``topk`` (default 5), ``batch_size``, ``pred_out_file`` (JSON), ``img_out_dir`` (drawn
    images, one PNG per input), ``show``, ``wait_time``, ``return_datasamples``.
    """

    visualize_kwargs = {'show', 'wait_time', 'img_out_dir'}
    postprocess_kwargs = {'pred_out_file'}

    def __init__(self, model: Any, weights: Optional[str] = None, device: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None, show_progress: bool = False):
        import mmscalenet  # noqa: F401  (registers the model, transforms and datasets)
        init_default_scope('mmdet')
        self._classes = tuple(classes) if classes is not None else None
        self._topk = 5
        super().__init__(model=model, weights=weights, device=device, scope='mmdet', show_progress=show_progress)
        if self.model.__class__.__name__ != 'ScaleNetClassifier' and not hasattr(self.model, 'head'):
            raise TypeError(f'{type(self.model).__name__} is not an image classifier (detection configs: use '
                            f'mmdet.apis.DetInferencer or tools/infer.py)')
        self.classes = self._resolve_classes()

    # ---- model, weights, pipeline -----------------------------------------------------------------------------
    def _init_model(self, cfg, weights, device='cpu'):
        cfg.model.pop('init_cfg', None)  # the checkpoint holds the trained weights: never fetch pretrained ones
        if 'backbone' in cfg.model:
            cfg.model.backbone.pop('init_cfg', None)
        with safe_mmengine_io():   # mmengine reads the checkpoint with weights_only=True
            return super()._init_model(cfg, weights, device)

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        if checkpoint is None:
            raise ValueError('ImageClassificationInferencer needs weights= (a checkpoint of the trained classifier)')
        state = checkpoint.get('state_dict', checkpoint)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith('data_preprocessor.')]
        if missing or unexpected:
            raise CheckpointError(f'the checkpoint does not match the config\'s classifier: {len(missing)} missing '
                                  f'(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}) keys')
        meta = checkpoint.get('meta') or {}
        model.dataset_meta = dict(meta.get('dataset_meta') or {})

    def _init_pipeline(self, cfg):
        from ..datasets.transforms import build_pipeline
        steps = list(cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', None) or [])
        kinds = [s.get('type') if isinstance(s, dict) else type(s).__name__ for s in steps]
        if not steps or kinds[-1] != 'PackClsInputs':
            steps.append(dict(type='PackClsInputs'))
            kinds.append('PackClsInputs')
        if 'LoadImagePIL' not in kinds:
            size = cfg.model.backbone.get('img_size', 224)
            size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
            resize = [] if 'TimmClsTransform' in kinds else [
                dict(type='TimmClsTransform', input_size=size, is_training=False, crop_pct=1.0)]
            steps = [dict(type='LoadImagePIL')] + resize + steps
        pipeline = build_pipeline(steps)

        def run(item: Union[str, np.ndarray]) -> Dict[str, Any]:
            return pipeline(dict(img_path=item) if isinstance(item, str) else dict(img=item))
        return run

    def _init_visualizer(self, cfg):
        return None  # drawing is done in visualize() with a plain mmengine Visualizer

    def _resolve_classes(self) -> Optional[List[str]]:
        if self._classes is not None:
            return list(self._classes)
        from ..datasets.imagenet import readable_class_names   # ImageNet's WordNet ids as words
        meta = getattr(self.model, 'dataset_meta', None) or {}
        if meta.get('classes'):
            return readable_class_names(meta['classes'])
        dataset = self.cfg.get('test_dataloader', {}).get('dataset', {})
        names = dataset.get('classes') or (dataset.get('metainfo') or {}).get('classes')
        return readable_class_names(names) if names else None

    # ---- inputs -----------------------------------------------------------------------------------------------
    def _inputs_to_list(self, inputs) -> list:
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        out: list = []
        for item in items:
            if isinstance(item, np.ndarray):
                if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
                    raise ValueError(f'array inputs must be RGB uint8 (H, W, 3), got {item.dtype} {item.shape}')
                out.append(item)
            elif isinstance(item, (str, os.PathLike)) and osp.isdir(item):
                found = sorted(f for f in os.listdir(item) if f.lower().endswith(IMG_EXTENSIONS)
                               and osp.isfile(osp.join(item, f)))
                if not found:
                    raise FileNotFoundError(f'no image files ({", ".join(IMG_EXTENSIONS)}) in folder {item}')
                out.extend(osp.join(os.fspath(item), f) for f in found)
            elif isinstance(item, (str, os.PathLike)):
                if not osp.isfile(item):
                    raise FileNotFoundError(f'image file not found: {item}')
                out.append(os.fspath(item))
            else:
                raise TypeError(f'inputs must be image paths, folders or RGB arrays, got {type(item).__name__}')
        return out

    def __call__(self, inputs, return_datasamples: bool = False, batch_size: int = 1, topk: int = 5,
                 **kwargs) -> dict:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f'topk must be a positive integer, got {topk!r}')
        self._topk = topk
        return super().__call__(inputs, return_datasamples=return_datasamples, batch_size=batch_size, **kwargs)

    # ---- results ----------------------------------------------------------------------------------------------
    def _topk_of(self, sample) -> List[Dict[str, Any]]:
        return top_classes(sample.pred_score, self._topk, self.classes)

    def visualize(self, inputs: list, preds: list, show: bool = False, wait_time: float = 0.,
                  img_out_dir: str = '') -> Optional[List[np.ndarray]]:
        """Each image with its top-k classes written on it; saved as ``img_out_dir/<name>.png``."""
        if not show and not img_out_dir:
            return None
        from PIL import Image
        if img_out_dir:
            os.makedirs(img_out_dir, exist_ok=True)
        drawn = []
        for i, (item, sample) in enumerate(zip(inputs, preds)):
            img = np.asarray(Image.open(item).convert('RGB')) if isinstance(item, str) else item
            out = draw_top_classes(img, self._topk_of(sample))
            drawn.append(out)
            if show:
                from mmengine.visualization import Visualizer
                Visualizer.get_instance('mmscalenet-classification').show(out, wait_time=wait_time)
            if img_out_dir:
                name = osp.splitext(osp.basename(item))[0] if isinstance(item, str) else f'{i:06d}'
                Image.fromarray(out).save(osp.join(img_out_dir, f'{name}.png'))
        return drawn

    def postprocess(self, preds: list, visualization: Optional[List[np.ndarray]], return_datasamples: bool = False,
                    pred_out_file: str = '') -> dict:
        """``dict(predictions=[...], visualization=[...])``; predictions as data samples or JSON-ready dicts."""
        records = []
        for sample in preds:
            top = self._topk_of(sample)
            records.append(dict(img_path=sample.metainfo.get('img_path'), pred_label=top[0]['label'],
                                pred_class=top[0]['class'], pred_score=top[0]['score'], topk=top))
        if pred_out_file:
            folder = osp.dirname(osp.abspath(pred_out_file))
            os.makedirs(folder, exist_ok=True)
            with open(pred_out_file, 'w') as f:
                json.dump(records, f, indent=1)
        return dict(predictions=preds if return_datasamples else records, visualization=visualization)
