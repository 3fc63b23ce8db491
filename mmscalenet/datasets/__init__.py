"""Classification data: ImageNet-1K (folder or list file), the embedded digits sets, timm-based transforms."""
from .cls_data_sample import ScaleNetClsDataSample
from .cluttered_digits import ScaleNetClutteredDigits
from .digits import ScaleNetDigits
from .errors import DataError, DataNotFoundError, DataValueError, ImageReadError
from .imagenet import ScaleNetImageNet
from .transforms import LoadImagePIL, PackClsInputs, ScaleNetRepeatAugSampler, TimmClsTransform

__all__ = ['DataError', 'DataNotFoundError', 'DataValueError', 'ImageReadError', 'LoadImagePIL', 'PackClsInputs',
           'ScaleNetClsDataSample', 'ScaleNetClutteredDigits', 'ScaleNetDigits', 'ScaleNetImageNet',
           'ScaleNetRepeatAugSampler', 'TimmClsTransform']
