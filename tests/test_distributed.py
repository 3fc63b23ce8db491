"""Distributed training with shared weights: DDP (2 gloo CPU processes) and FSDP2 units, gradients == 1 process."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY_ARCH
from mmscalenet.distributed import check_fsdp_units, ddp_wrapper_cfg, fsdp_units, scalenet_backbones
from mmscalenet.models import ScaleNetSwin, ScaleNetViT

MODELS = {
    'parallel': dict(adapter=dict(type='ParallelAdapter', bottleneck=4), function_preserving=True,
                     unshared=('norm',)),
    'lora': dict(adapter=dict(type='LoRA', rank=2), mapping='interleave'),
}


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _build(name):
    """A grown model (4 -> 8 positions) with shared weights, adapters and activation checkpointing."""
    torch.manual_seed(0)
    model = ScaleNetViT(TINY_ARCH, depth=8, img_size=32, patch_size=8, drop_path_rate=0.0, with_cp=True,
                        **MODELS[name])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():   # non-zero adapters / gates so every parameter gets a real gradient
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.train()


def _batch():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _loss(model, x):
    return model(x)[0].pow(2).mean()


def _grads(model):
    return {k: (p.grad.full_tensor() if hasattr(p.grad, 'full_tensor') else p.grad).clone()
            for k, p in model.named_parameters()}


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from mmscalenet.distributed import apply_fully_shard
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    x = _batch()[rank * 2:(rank + 1) * 2]          # each process: half of the global batch
    results = {}
    for name in MODELS:
        model = _build(name)
        ddp = DDP(model)                              # find_unused_parameters=False, static_graph=False
        assert not ddp.find_unused_parameters
        for _ in range(2):                            # a second iteration catches "marked ready twice" errors
            ddp.zero_grad()
            _loss(ddp, x).backward()
        results[f'ddp-{name}'] = _grads(model)
    from torch.distributed.device_mesh import init_device_mesh
    model = _build('parallel')
    apply_fully_shard(model, mesh=init_device_mesh('cpu', (world,)))
    for _ in range(2):
        model.zero_grad()
        _loss(model, x).backward()
    results['fsdp-parallel'] = _grads(model)
    if rank == 0:
        torch.save(results, os.path.join(out_dir, 'grads.pt'))
    dist.destroy_process_group()


def test_two_process_gradients_equal_single_process(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    results = torch.load(tmp_path / 'grads.pt', weights_only=True)
    for key, grads in results.items():
        model = _build(key.split('-', 1)[1])
        model.zero_grad()
        _loss(model, _batch()).backward()          # one process, the whole global batch
        expected = _grads(model)
        if key.startswith('fsdp'):                 # FSDP2 needs 1-element gates instead of 0-dim ones
            grads = {k: v.reshape(expected[k].shape) for k, v in grads.items()}
        assert grads.keys() == expected.keys()
        for k in expected:
            assert expected[k].abs().max() > 0 or 'lora_B' in k or 'up' in k, k
            torch.testing.assert_close(grads[k], expected[k], atol=1e-6, rtol=1e-5, msg=f'{key}: {k}')


def test_fsdp_units_keep_each_shared_tensor_in_one_unit():
    model = _build('parallel')
    units = fsdp_units(model)
    assert len(units) == 4
    for j, unit in enumerate(units):
        assert unit[0] is model.blocks[j]
        assert [pos.index for pos in unit[1:]] == list(model.plan.positions_of(j))
    check_fsdp_units(units)
    covered = {id(p) for unit in units for m in unit for p in m.parameters()}
    assert all(id(p) in covered for n, p in model.named_parameters() if n.startswith(('blocks.', 'positions.')))
    # the failure the policy avoids: a shared block in one unit, one of its positions in another
    with pytest.raises(ValueError, match='shared tensors must stay in one unit'):
        check_fsdp_units([[model.blocks[0], model.positions[0]], [model.positions[4], model.blocks[0]]])


@pytest.mark.parametrize('growth', ['shared', 'copy'])
def test_fsdp_units_cover_every_swin_stage(growth):
    """The same units for each Swin stage (one grown stack per stage) as for the ViT trunk; the foil's copies are
    a plain deep stack: one unit per position."""
    model = ScaleNetSwin(dict(embed_dims=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 2), window_size=4),
                         depths=(2, 4, 2, 2), img_size=32, growth=growth)
    assert scalenet_backbones(torch.nn.Sequential(model)) == [model]
    units = fsdp_units(model)
    stored = [1, 2, 1, 1] if growth == 'shared' else [2, 4, 2, 2]
    assert len(units) == sum(stored)
    check_fsdp_units(units)
    first = 0
    for s, n in enumerate(stored):
        stage = model.layers[s]
        for j, unit in enumerate(units[first:first + n]):
            assert unit[0] is stage.blocks[j]
            assert [pos.index for pos in unit[1:]] == list(model.plans[s].positions_of(j))
        first += n
    covered = {id(p) for unit in units for m in unit for p in m.parameters()}
    grown = [p for n, p in model.named_parameters() if '.blocks.' in n or '.positions.' in n]
    assert grown and all(id(p) in covered for p in grown)


def test_ddp_wrapper_defaults():
    cfg = ddp_wrapper_cfg()
    assert cfg == dict(type='MMDistributedDataParallel', find_unused_parameters=False, static_graph=False)
    assert ddp_wrapper_cfg(device_ids=None)['device_ids'] is None


def test_dist_train_sh_help_and_errors():
    proc = subprocess.run(['bash', f'{ROOT}/tools/dist_train.sh', '--help'], capture_output=True, text=True)
    assert proc.returncode == 0 and 'NNODES' in proc.stdout and 'NODE_RANK' in proc.stdout
    proc = subprocess.run(['bash', f'{ROOT}/tools/dist_train.sh', 'missing.py', '2'], capture_output=True, text=True)
    assert proc.returncode == 1 and 'missing.py' in proc.stderr
    proc = subprocess.run(['bash', f'{ROOT}/tools/dist_train.sh', f'{ROOT}/tests/configs/rel_tiny_cls.py', 'x'],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'GPUS' in proc.stderr


def test_dist_train_through_mmengine_equals_single_process(tmp_path):
    """tools/dist_train.sh: 2 gloo processes x batch 2 == 1 process x batch 4 (SGD, 2 iterations, with_cp)."""
    config = f'{ROOT}/tests/configs/rel_tiny_cls.py'
    common = ['train_cfg.max_epochs=1', 'model.backbone.with_cp=True', 'optim_wrapper.optimizer.type=SGD',
              'optim_wrapper.optimizer.lr=0.5', 'param_scheduler=None']
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT)
    dist = subprocess.run(['bash', f'{ROOT}/tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'dist'),
                           '--cfg-options', 'train_dataloader.batch_size=2'] + common,
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert dist.returncode == 0, dist.stdout[-3000:] + dist.stderr[-3000:]
    log = dist.stdout + dist.stderr
    assert 'Distributed training: True' in log and 'find_unused_parameters=False' in log
    single = subprocess.run([sys.executable, f'{ROOT}/tools/train.py', config, '--work-dir', str(tmp_path / 'one'),
                             '--cfg-options'] + common, capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    from mmscalenet.checkpoint import safe_load   # weights_only, mmengine's checkpoint types allowed
    a = safe_load(str(tmp_path / 'dist' / 'epoch_1.pth'))['state_dict']
    b = safe_load(str(tmp_path / 'one' / 'epoch_1.pth'))['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5, msg=k)
