"""Write the old-checkpoint fixtures under tests/data/ (run once; the files are committed, not regenerated).

They were made by mmscalenet at commit d522bc7 (before ``mmscalenet/checkpoint.py`` became a package), so
``tests/test_checkpoint.py::test_fixture_*`` proves that files written by that code still load, tensor for tensor:

* ``scalenet_v1_tiny.pth`` / ``.safetensors``: a 2-layer ViT grown to 4 positions (cyclic) with parallel adapters
  and residual gates, every tensor random (``save_scalenet`` with a 3-class head);
* ``scalenet_v1_runner.pth``: the same backbone as an mmengine training checkpoint holds it (``backbone.`` keys,
  ``meta.scalenet`` as ``ScaleNetCheckpointMetaHook`` writes it, a ``message_hub`` with ``HistoryBuffer`` s and
  numpy scalars);
* ``scalenet_v1_reference.pt``: the input and the backbone's output (class token) when the fixtures were made.

Swin fixtures (``swin_v1_*``), written by mmscalenet at commit 11b7b1d (``mmscalenet/swin_checkpoint.py``, before
the two backbone families shared one checkpoint format): a tiny Swin (2 stages, base depths 2, 2) grown to (2, 4)
with parallel adapters and gates, every tensor random; ``swin_v1_tiny.pth`` / ``.safetensors`` (``save_swin`` with a
3-class head), ``swin_v1_runner.pth`` (``backbone.`` keys + ``meta.scalenet`` from ``swin_scalenet_meta``) and
``swin_v1_reference.pt`` (input, pooled output).

    python tests/data/make_fixtures.py          # ViT files (do not rerun: they are the d522bc7 files)
    python tests/data/make_fixtures.py swin     # Swin files
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

ARCH = dict(embed_dims=16, num_layers=2, num_heads=2, mlp_ratio=2.0)
KWARGS = dict(arch=ARCH, depth=4, mapping='cyclic', adapter=dict(type='ParallelAdapter', bottleneck=4),
              function_preserving=True, img_size=32, patch_size=8)


def main() -> None:
    import numpy as np
    from mmengine.logging import HistoryBuffer

    from mmscalenet.checkpoint import META_KEY, save_scalenet, scalenet_meta
    from mmscalenet.models import ScaleNetViT

    torch.manual_seed(0)
    model = ScaleNetViT(**KWARGS)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():   # zero-initialised adapters and gates too, so a wrong remap changes the output
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.eval()
    head = {'weight': torch.randn(3, ARCH['embed_dims'], generator=g), 'bias': torch.randn(3, generator=g)}
    x = torch.randn(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        out = model(x)[0]
    save_scalenet(model, os.path.join(HERE, 'scalenet_v1_tiny.pth'), head=head)
    save_scalenet(model, os.path.join(HERE, 'scalenet_v1_tiny.safetensors'), head=head)
    state = {f'backbone.{k}': v.clone() for k, v in model.state_dict().items()}
    state.update({f'head.fc.{k}': v.clone() for k, v in head.items()})
    runner = {'meta': {'epoch': 1, 'iter': 4, 'seed': np.int64(0), 'mmengine_version': '0.10.7',
                       META_KEY: scalenet_meta(model), f'{META_KEY}_prefix': 'backbone.'},
              'state_dict': state,
              'message_hub': {'log_scalars': {'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])},
                              'runtime_info': {'epoch': 1, 'iter': 4, 'lr': np.float64(0.01)},
                              'resumed_keys': {'epoch': True}}}
    torch.save(runner, os.path.join(HERE, 'scalenet_v1_runner.pth'))
    torch.save({'input': x, 'output': out, 'kwargs': {k: v for k, v in KWARGS.items() if k != 'arch'},
                'arch': ARCH, 'commit': 'd522bc7'}, os.path.join(HERE, 'scalenet_v1_reference.pt'))


SWIN_ARCH = dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
SWIN_KWARGS = dict(depths=(2, 4), mapping='cyclic', adapter=dict(type='ParallelAdapter', bottleneck=4),
                   function_preserving=True, img_size=32, out_type='pooled')


def swin() -> None:
    from mmscalenet.models.swin import ScaleNetSwin
    from mmscalenet.swin_checkpoint import save_swin, swin_scalenet_meta

    torch.manual_seed(0)
    model = ScaleNetSwin(SWIN_ARCH, **SWIN_KWARGS)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.eval()
    head = {'weight': torch.randn(3, 32, generator=g), 'bias': torch.randn(3, generator=g)}
    x = torch.randn(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        out = model(x)[0]
    save_swin(model, os.path.join(HERE, 'swin_v1_tiny.pth'), head=head)
    save_swin(model, os.path.join(HERE, 'swin_v1_tiny.safetensors'), head=head)
    state = {f'backbone.{k}': v.clone() for k, v in model.state_dict().items()}
    state.update({f'head.fc.{k}': v.clone() for k, v in head.items()})
    runner = {'meta': {'epoch': 1, 'iter': 4, 'scalenet': swin_scalenet_meta(model), 'scalenet_prefix': 'backbone.'},
              'state_dict': state}
    torch.save(runner, os.path.join(HERE, 'swin_v1_runner.pth'))
    torch.save({'input': x, 'output': out, 'kwargs': {k: v for k, v in SWIN_KWARGS.items()}, 'arch': SWIN_ARCH,
                'commit': '11b7b1d'}, os.path.join(HERE, 'swin_v1_reference.pt'))


if __name__ == '__main__':
    swin() if sys.argv[1:] == ['swin'] else main()
