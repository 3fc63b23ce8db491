"""The data sample of one classification image: ``gt_label`` (and, after prediction, ``pred_score`` /
``pred_label``), plus an always-present, empty ``gt_instances``.

Why the empty field: mmdet's own dataset tools (``tools/analysis_tools/browse_dataset.py``) read
``data_sample.gt_instances`` of every sample before drawing it; the classification configs register in mmdet's
registries, so without it they stop with an ``AttributeError``. Nothing is stored unless a tool sets it.
"""
from mmengine.structures import BaseDataElement, InstanceData


class ScaleNetClsDataSample(BaseDataElement):

    @property
    def gt_instances(self) -> InstanceData:
        """The instances a tool set, else an empty ``InstanceData`` (a classification image has no boxes)."""
        return self._gt_instances if '_gt_instances' in self._data_fields else InstanceData()

    @gt_instances.setter
    def gt_instances(self, value: InstanceData) -> None:
        self.set_field(value, '_gt_instances', dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self) -> None:
        del self._gt_instances
