# The same detector with the ScaleNet backbone of the classification half: depth L = 4 grown to 2L = 8 positions
# (cyclic sharing, parallel adapters per position). Everything else as digits_det_base.py.
_base_ = './digits_det_base.py'

model = dict(
    backbone=dict(
        depth=8,
        mapping='cyclic',
        adapter=dict(_delete_=True, type='ParallelAdapter', bottleneck=8),   # mmscalenet.demo.DEMO_ADAPTER
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/classification/scalenet_backbone.pth')))
