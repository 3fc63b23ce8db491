"""High-level inference APIs (OpenMMLab glue). Detection keeps mmdet's ``DetInferencer`` / ``inference_detector``."""
from .inference import ImageClassificationInferencer

__all__ = ['ImageClassificationInferencer']
