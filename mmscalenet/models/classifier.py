"""``ScaleNetClassifier``: ``ScaleNetViT`` + a linear head for the ImageNet stage (registered in mmdet ``MODELS``).

The data preprocessor does what timm's GPU prefetcher does: uint8 images -> float, mean/std normalisation,
random erasing and Mixup / CutMix on the batch (training only). The loss is soft-target cross-entropy, so the
mixed and label-smoothed targets of DeiT's recipe train the model directly.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from ..checkpoint import backbone_state_dict, load_into_backbone, resolve_checkpoint, split_checkpoint
from ..utils import log
from .vit import ScaleNetViT

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_SOFT_TARGET_CE = SoftTargetCrossEntropy()   # no state: one instance, not a submodule of every classifier


@MODELS.register_module()
class ScaleNetClsDataPreprocessor(BaseDataPreprocessor):
    """Batch images, normalise, and (training only) random-erase and Mixup / CutMix.

    Args:
        mean, std: per-channel statistics on the 0-255 scale (inputs are uint8 images).
        num_classes: needed for the soft targets (filled in by ``ScaleNetClassifier``).
        label_smoothing: smoothing of the soft targets (filled in by ``ScaleNetClassifier``).
        random_erasing: ``dict(prob=0.25, mode='pixel', max_count=1)`` -> timm ``RandomErasing``; None = off.
        mixup: ``dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch')`` -> timm
            ``Mixup``; None = off. Batches of odd size are not mixed (use ``drop_last=True`` for training).

    In training, every data sample gets ``gt_score``: its (mixed, smoothed) target distribution.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 num_classes: Optional[int] = None, label_smoothing: float = 0.0,
                 random_erasing: Optional[Mapping[str, Any]] = None, mixup: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.num_classes, self.label_smoothing = num_classes, float(label_smoothing)
        self.random_erasing_cfg, self.mixup_cfg = random_erasing, mixup
        self.mixup = None
        if mixup is not None:
            if num_classes is None:
                raise ValueError('mixup needs num_classes')
            from timm.data import Mixup
            self.mixup = Mixup(label_smoothing=self.label_smoothing, num_classes=num_classes, **dict(mixup))
        self.erase = None
        if random_erasing is not None:
            cfg = dict(random_erasing)
            self.erase_args = dict(probability=cfg.pop('prob', 0.25), mode=cfg.pop('mode', 'pixel'),
                                   max_count=cfg.pop('max_count', 1), **cfg)
            self.erase = True

    def _random_erase(self, x: torch.Tensor) -> torch.Tensor:
        from timm.data.random_erasing import RandomErasing
        return RandomErasing(device=x.device, **self.erase_args)(x)

    def forward(self, data: Dict[str, Any], training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        inputs, samples = data['inputs'], data.get('data_samples')
        if isinstance(inputs, (list, tuple)):
            shapes = {tuple(t.shape) for t in inputs}
            if len(shapes) != 1:
                raise ValueError(f'images in a batch must share one size (crop them in the pipeline), got {shapes}')
            inputs = torch.stack(list(inputs))
        x = (inputs.float() - self.mean) / self.std
        if training:
            if self.erase:
                x = self._random_erase(x)
            if samples is not None and self.num_classes is not None:
                labels = torch.cat([s.gt_label for s in samples]).to(x.device)
                if self.mixup is not None and len(x) % 2 == 0:
                    x, targets = self.mixup(x, labels)
                else:   # timm's one-hot with smoothing (off value smoothing / K)
                    targets = mixup_target(labels, self.num_classes, smoothing=self.label_smoothing)
                for s, t in zip(samples, targets):
                    s.gt_score = t
        return dict(inputs=x, data_samples=samples)


@MODELS.register_module()
class ScaleNetClassifier(BaseModel):
    """Image classifier: ``ScaleNetViT`` (class-token output) + dropout + linear head.

    Args:
        backbone: ``ScaleNetViT`` config (``out_type='cls_token'``).
        num_classes: number of classes of the head.
        label_smoothing: used for the soft targets when no Mixup is configured (and passed to Mixup).
        head_drop_rate: dropout before the head.
        data_preprocessor: ``ScaleNetClsDataPreprocessor`` config (``num_classes`` / ``label_smoothing`` filled in).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH | 'timm:NAME' | URL)`` loads a timm / DeiT / ScaleNet
            / classifier checkpoint into the backbone (expanding it to the plan) **and** its ``head.*`` into the
            head when the shapes match, so at D = L the logits equal timm's. Without it the backbone's own
            ``init_cfg`` (if any) is used.

    ``forward(inputs, data_samples, mode)``: 'tensor' -> logits (B, num_classes); 'loss' -> ``dict(loss=...)``
    (soft-target cross-entropy on ``gt_score``, else on smoothed ``gt_label``); 'predict' -> data samples with
    ``pred_score`` (softmax) and ``pred_label``.
    """

    def __init__(self, backbone: Mapping[str, Any], num_classes: int = 1000, label_smoothing: float = 0.1,
                 head_drop_rate: float = 0.0, data_preprocessor: Optional[Union[Mapping[str, Any], nn.Module]] = None,
                 init_cfg: Optional[Mapping[str, Any]] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ScaleNetClsDataPreprocessor')
        if isinstance(data_preprocessor, Mapping):
            data_preprocessor = dict(data_preprocessor)
            if data_preprocessor.get('type') in ('ScaleNetClsDataPreprocessor', ScaleNetClsDataPreprocessor):
                data_preprocessor.setdefault('num_classes', num_classes)
                data_preprocessor.setdefault('label_smoothing', label_smoothing)
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=None)
        self.backbone = MODELS.build(dict(backbone)) if isinstance(backbone, Mapping) else backbone
        if getattr(self.backbone, 'out_type', 'cls_token') not in ('cls_token', 'pooled'):
            raise ValueError('ScaleNetClassifier needs a backbone with out_type="cls_token" (ScaleNetViT) or '
                             '"pooled" (ScaleNetSwin)')
        self.num_classes, self.label_smoothing = int(num_classes), float(label_smoothing)
        self.head_drop = nn.Dropout(head_drop_rate)
        # ScaleNetSwin's pooled features have the last stage's width, ScaleNetViT's class token embed_dims
        width = self.backbone.embed_dims if isinstance(self.backbone, ScaleNetViT) else self.backbone.num_features[-1]
        self.head = nn.Linear(width, self.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.init_cfg = dict(init_cfg) if init_cfg is not None else None

    # ---- initialisation ---------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``init_cfg``'s checkpoint into backbone + head, or run the backbone's own ``init_weights``."""
        if not self.init_cfg:
            if hasattr(self.backbone, 'init_weights'):
                self.backbone.init_weights()
            return
        if self.init_cfg.get('type') != 'Pretrained' or not self.init_cfg.get('checkpoint'):
            raise ValueError(f'ScaleNetClassifier supports init_cfg=dict(type="Pretrained", checkpoint=...), got '
                             f'{self.init_cfg!r}')
        self.load_pretrained(self.init_cfg['checkpoint'], bool(self.init_cfg.get('allow_other_plan', False)))

    def load_pretrained(self, checkpoint: Union[str, Mapping[str, Any]],
                        allow_other_plan: bool = False) -> Dict[str, Any]:
        """Backbone via its ``load_pretrained`` (expanded to the plan); ``head.*`` when it fits ``num_classes``."""
        obj = resolve_checkpoint(checkpoint)
        if isinstance(self.backbone, ScaleNetViT):   # checked, named, maybe at another plan
            name = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else None
            report = load_into_backbone(self.backbone, obj, allow_other_plan, name=name)
        else:                                        # ScaleNetSwin: its own loader
            report = self.backbone.load_pretrained(obj, allow_other_plan)
        state, _ = split_checkpoint(obj)
        _, head = backbone_state_dict(state)
        if not head:   # timm Swin / ConvNeXt style classifier: head.fc.*
            head = {k[len('head.fc.'):]: v for k, v in state.items() if k.startswith('head.fc.')}
        head = {k: v for k, v in head.items() if k in ('weight', 'bias')}
        own = self.head.state_dict()
        if set(head) == set(own) and all(head[k].shape == own[k].shape for k in own):
            self.head.load_state_dict(head)
            report['head'] = 'loaded'
            log(f'ScaleNetClassifier: loaded the {self.num_classes}-class head from the checkpoint')
        else:
            shape = tuple(head['weight'].shape) if 'weight' in head else None
            report['head'] = 'new'
            log(f'ScaleNetClassifier: head not loaded (checkpoint head {shape or "absent"}, model '
                f'{tuple(own["weight"].shape)}): newly initialised')
        return report

    # ---- forward ------------------------------------------------------------------------------------------------
    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(inputs)[-1]

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        logits = self.head(self.head_drop(self.extract_feat(inputs)))
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            return dict(loss=self.loss(logits, data_samples))
        if mode == 'predict':
            return self.predict(logits, data_samples)
        raise ValueError(f'mode must be "tensor", "loss" or "predict", got {mode!r}')

    def loss(self, logits: torch.Tensor, data_samples: Optional[List[BaseDataElement]]) -> torch.Tensor:
        if not data_samples:
            raise ValueError('mode="loss" needs data_samples with gt_label')
        if all('gt_score' in s for s in data_samples):
            targets = torch.stack([s.gt_score for s in data_samples]).to(logits)
        else:
            labels = torch.cat([s.gt_label for s in data_samples]).to(logits.device)
            targets = mixup_target(labels, self.num_classes, smoothing=self.label_smoothing).to(logits)
        return _SOFT_TARGET_CE(logits.float(), targets)

    @torch.no_grad()
    def predict(self, logits: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None) -> List[BaseDataElement]:
        scores = F.softmax(logits.float(), dim=-1)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(logits))]
        for s, score in zip(data_samples, scores):
            s.pred_score = score
            s.pred_label = score.argmax().view(1)
        return data_samples
