"""Classification data: ImageNet-1K (folder or list file), the embedded digits set, timm-based transforms."""
from .digits import ScaleNetDigits
from .imagenet import ScaleNetImageNet
from .transforms import LoadImagePIL, PackClsInputs, ScaleNetRepeatAugSampler, TimmClsTransform

__all__ = ['LoadImagePIL', 'PackClsInputs', 'ScaleNetDigits', 'ScaleNetImageNet', 'ScaleNetRepeatAugSampler',
           'TimmClsTransform']
