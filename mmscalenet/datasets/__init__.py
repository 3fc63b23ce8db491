"""Classification data: ImageNet-1K (folder or list file), the embedded digits set, timm-based transforms."""
from .digits import ScaleNetDigits
from .errors import DataError, DataNotFoundError, DataValueError, ImageReadError
from .imagenet import ScaleNetImageNet
from .transforms import LoadImagePIL, PackClsInputs, ScaleNetRepeatAugSampler, TimmClsTransform

__all__ = ['DataError', 'DataNotFoundError', 'DataValueError', 'ImageReadError', 'LoadImagePIL', 'PackClsInputs',
           'ScaleNetDigits', 'ScaleNetImageNet', 'ScaleNetRepeatAugSampler', 'TimmClsTransform']
