"""Distributed training of shared-weight ScaleNet models: DDP defaults, FSDP units, CPU (gloo) launching.

Pure torch at import time (mmengine only where noted). See ``docs/distributed.md``.

**DDP.** A base layer's tensors are used by several positions in one forward. With non-reentrant activation
checkpointing (``with_cp=True`` always uses ``use_reentrant=False``) autograd sums those contributions into one
gradient before the parameter's accumulate-grad hook fires, so DDP sees each shared parameter become ready exactly
once per backward: no ``find_unused_parameters``, no ``static_graph`` needed (both still work).
:func:`ddp_wrapper_cfg` is the ``model_wrapper_cfg`` to use.

**FSDP.** A shared tensor must live in one FSDP unit together with every module that uses it, otherwise the unit
that owns it may be resharded while another position still needs it. :func:`fsdp_units` returns, for each base
layer j of every grown stack (the ViT trunk, each Swin stage), ``[blocks[j], positions[p] for every p with
g(p) = j]``; :func:`apply_fully_shard` passes each group to
FSDP2's ``fully_shard`` (which accepts a list of modules as one unit) and shards the rest at the root.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import torch
from torch import nn


def ddp_wrapper_cfg(find_unused_parameters: bool = False, static_graph: bool = False,
                    device_ids: Any = 'auto', **kwargs: Any) -> Dict[str, Any]:
    """``model_wrapper_cfg`` for mmengine's ``MMDistributedDataParallel`` on a ScaleNet model.

    ``device_ids='auto'`` leaves mmengine's default (the local GPU); ``None`` is what CPU (gloo) training needs.
    """
    cfg: Dict[str, Any] = dict(type='MMDistributedDataParallel', find_unused_parameters=find_unused_parameters,
                               static_graph=static_graph, **kwargs)
    if device_ids != 'auto':
        cfg['device_ids'] = device_ids
    return cfg


def scalenet_backbones(model: nn.Module) -> List[nn.Module]:
    """Every grown backbone in ``model`` (ViT and Swin alike: the modules that list their grown stacks)."""
    from .models.swin import ScaleNetSwin
    from .models.vit import ScaleNetViT
    return [m for m in model.modules() if isinstance(m, (ScaleNetViT, ScaleNetSwin))]


def fsdp_units(backbone: nn.Module) -> List[List[nn.Module]]:
    """One FSDP unit per base layer of every grown stack (the ViT trunk, each Swin stage): the shared block and
    every position that runs it."""
    return [[stack.blocks[j]] + [stack.positions[p] for p in plan.positions_of(j)]
            for _, plan, stack in backbone.growth_stacks() for j in range(plan.base_depth)]


def check_fsdp_units(units: List[List[nn.Module]]) -> None:
    """Raise if a parameter is owned by two units (the split-shared-tensor failure)."""
    owner: Dict[int, int] = {}
    for i, unit in enumerate(units):
        for module in unit:
            for param in module.parameters():
                if owner.setdefault(id(param), i) != i:
                    raise ValueError(f'a parameter is in FSDP units {owner[id(param)]} and {i}: shared tensors must '
                                     f'stay in one unit')


def apply_fully_shard(model: nn.Module, mesh: Optional[Any] = None, **kwargs: Any) -> nn.Module:
    """Shard ``model`` with FSDP2 (``torch.distributed.fsdp.fully_shard``), one unit per shared layer group.

    Each grown backbone in ``model`` (``ScaleNetViT``, ``ScaleNetSwin``) gets one unit per base layer of each
    stack (:func:`fsdp_units`); everything else (embeddings, patch merging, norms, necks, heads) goes into the root
    unit. ``kwargs`` go to every ``fully_shard`` call
    (``reshard_after_forward``, ``mp_policy``, ...).
    """
    from torch.distributed.fsdp import fully_shard
    for backbone in scalenet_backbones(model):
        units = fsdp_units(backbone)
        check_fsdp_units(units)
        for unit in units:
            fully_shard(unit, mesh=mesh, **kwargs)
    fully_shard(model, mesh=mesh, **kwargs)
    return model


def init_cpu_distributed(launcher: str, backend: str = 'gloo', timeout_s: Optional[float] = None) -> bool:
    """Start the process group on a machine without GPUs, before mmengine's Runner does.

    mmengine 0.10's pytorch launcher calls ``torch.cuda.set_device`` and gives DDP ``device_ids=[LOCAL_RANK]``,
    both of which fail on CPU. Returns True when it initialised the group (then use
    ``ddp_wrapper_cfg(device_ids=None)``).
    """
    import torch.distributed as dist
    if launcher != 'pytorch' or torch.cuda.is_available() or not dist.is_available() or dist.is_initialized():
        return False
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        raise RuntimeError('--launcher pytorch needs RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT: start it with '
                           'torchrun (tools/dist_train.sh)')
    kwargs: Dict[str, Any] = {}
    if timeout_s is not None:
        import datetime
        kwargs['timeout'] = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend=backend, **kwargs)
    return True
