"""Classification data on mmengine's / mmcv's conventions: BaseDataset arguments, dataset wrappers, class names
from folders or a names file, transforms as mmcv BaseTransforms."""
import os
import os.path as osp

import pytest

pytest.importorskip('mmdet')

import mmscalenet  # noqa: E402,F401
from mmdet.registry import DATASETS, TRANSFORMS  # noqa: E402


def _tree(root, classes=('n01', 'n02', 'n03'), per_class=2):
    from PIL import Image
    for i, c in enumerate(classes):
        os.makedirs(osp.join(root, 'train', c), exist_ok=True)
        for k in range(per_class):
            Image.new('RGB', (8, 8), color=(60 * i, 10 * k, 0)).save(osp.join(root, 'train', c, f'{k}.png'))


def test_mmengine_dataset_arguments(tmp_path, mmdet_scope):
    root = str(tmp_path / 'in')
    _tree(root)
    ds = DATASETS.build(dict(type='ScaleNetImageNet', data_root=root, data_prefix=dict(img_path='train'),
                             indices=4, test_mode=True))
    assert len(ds) == 4 and ds.metainfo['classes'] == ('n01', 'n02', 'n03') and ds.test_mode
    named = DATASETS.build(dict(type='ScaleNetImageNet', data_root=root,
                                metainfo=dict(classes=('n01', 'n02', 'n03', 'n04'))))
    assert named.metainfo['classes'][-1] == 'n04' and len(named) == 6
    lazy = DATASETS.build(dict(type='ScaleNetImageNet', data_root=root, lazy_init=True))
    assert not lazy._fully_initialized
    assert lazy[5]['gt_label'] == 2 and lazy._fully_initialized          # loads on first use
    digits = DATASETS.build(dict(type='ScaleNetDigits', split='val', indices=[0, 5, 7],
                                 metainfo=dict(classes=[f'digit {d}' for d in range(10)])))
    assert len(digits) == 3 and digits.metainfo['classes'][3] == 'digit 3'
    with pytest.raises(ValueError, match='img_path'):
        DATASETS.build(dict(type='ScaleNetImageNet', data_root=root, data_prefix=dict(img='train')))


def test_list_file_class_names_from_folders_or_names_file(tmp_path, mmdet_scope):
    root = str(tmp_path / 'in')
    _tree(root)
    os.makedirs(osp.join(root, 'meta'))
    with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
        f.write('n03/0.png 2\nn01/1.png 0\n')
    ds = DATASETS.build(dict(type='ScaleNetImageNet', data_root=root, split='train', ann_file='meta/val.txt'))
    assert ds.metainfo['classes'] == ('n01', 'n02', 'n03')               # not '0', '1', '2'
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('tench\ngoldfish\nshark\n')
    ds = DATASETS.build(dict(type='ScaleNetImageNet', data_root=root, split='train', ann_file='meta/val.txt'))
    assert ds.metainfo['classes'] == ('tench', 'goldfish', 'shark')


def test_dataset_wrappers(tmp_path, mmdet_scope):
    root = str(tmp_path / 'in')
    _tree(root, per_class=1)
    base = dict(type='ScaleNetImageNet', data_root=root)
    rep = DATASETS.build(dict(type='RepeatDataset', times=3, dataset=base))
    assert len(rep) == 9 and rep.metainfo['classes'] == ('n01', 'n02', 'n03')
    cat = DATASETS.build(dict(type='ConcatDataset', datasets=[base, dict(type='ScaleNetDigits', split='val')],
                              ignore_keys=['classes']))
    assert len(cat) == 3 + len(DATASETS.build(dict(type='ScaleNetDigits', split='val')))
    balanced = DATASETS.build(dict(type='ClassBalancedDataset', oversample_thr=0.5, dataset=base))
    assert len(balanced) >= 3 and balanced[0]['gt_label'] in (0, 1, 2)


def test_transforms_are_mmcv_base_transforms(tmp_path):
    from mmcv.transforms import BaseTransform
    for name in ('LoadImagePIL', 'TimmClsTransform', 'PackClsInputs'):
        assert issubclass(TRANSFORMS.get(name), BaseTransform), name
