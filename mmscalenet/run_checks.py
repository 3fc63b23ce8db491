"""Checks the tools run before any work: values of the loop and loaders, the size of the model a config (and its
``--cfg-options``) asks for, output folders. Each mistake is one :class:`~mmscalenet.tools_common.ToolError`
naming the key, raised before a work dir, a model or an output exists.
"""
import os
import os.path as osp
import sys
from typing import Any, Mapping, Optional

from .tools_common import ToolError

MAX_POSITIONS = 4096   # the ScaleNet file format's bound on a plan (checkpoint/format.py): deeper cannot be saved
BYTES_PER_TRAINED_PARAM = 16   # fp32 weight + gradient + AdamW's two moments


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_loop_values(cfg, path: str) -> None:
    """``train_cfg.max_epochs`` / ``max_iters`` and ``val_interval`` positive integers, every dataloader's
    ``num_workers`` an integer >= 0 (mmengine would train nothing, or fail with a traceback, otherwise)."""
    train_cfg = cfg.get('train_cfg', None) or {}
    if isinstance(train_cfg, Mapping):
        for key in ('max_epochs', 'max_iters', 'val_interval', 'val_begin'):
            if key not in train_cfg:
                continue
            value, low = train_cfg[key], 0 if key == 'val_begin' else 1
            if not _is_int(value) or value < low:
                raise ToolError(f'{path}: train_cfg.{key} must be an integer >= {low}, got {value!r}')
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name, None)
        if isinstance(loader, Mapping) and 'num_workers' in loader:
            n = loader['num_workers']
            if not _is_int(n) or n < 0:
                raise ToolError(f'{path}: {name}.num_workers must be an integer >= 0, got {n!r}')


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 where unknown)."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
        return 0


def backbone_parameters(backbone: Mapping[str, Any]) -> Optional[int]:
    """The parameters of the backbone a config describes, counted on a model built on the ``meta`` device (no
    memory, however wide); None where it cannot be built that way (the model reports its own error later)."""
    import torch
    from mmdet.registry import MODELS
    import mmscalenet  # noqa: F401  (registers the backbones)
    try:
        with torch.device('meta'):
            model = MODELS.build(dict(backbone, init_cfg=None))
    except Exception:  # noqa: BLE001  (any bad value: the real build names it)
        return None
    return sum(p.numel() for p in model.parameters())


def check_model_size(cfg, path: str, memory: Optional[int] = None) -> None:
    """Refuse a backbone (after ``--cfg-options``) that cannot be built or trained here, before it is built:
    more plan positions than a ScaleNet file holds (checked first: even a meta-device build of a million
    positions takes gigabytes of Python objects), or parameters whose training state (16 bytes each: weight,
    gradient, AdamW moments) exceeds the machine's memory. The message gives the estimate."""
    backbone = (cfg.get('model', None) or {}).get('backbone', None)
    if not isinstance(backbone, Mapping):
        return
    depth = backbone.get('depth')
    if _is_int(depth) and depth > MAX_POSITIONS:
        raise ToolError(f'{path}: model.backbone.depth={depth} is more positions than a ScaleNet model can hold '
                        f'(at most {MAX_POSITIONS}: building it alone would take gigabytes of Python objects)')
    memory = machine_memory() if memory is None else memory
    params = backbone_parameters(backbone) if memory else None
    if params is None:
        return
    need = params * BYTES_PER_TRAINED_PARAM
    if need > memory:
        raise ToolError(f'{path}: the backbone asks for about {params / 1e9:.3g} G parameters, {need / 2 ** 30:,.0f} '
                        f'GiB to train (16 bytes each: weight, gradient, AdamW moments) but this machine has '
                        f'{memory / 2 ** 30:,.0f} GiB; check model.backbone.depth / adapter.bottleneck / adapter.rank '
                        f'/ arch')


def check_output_dir(path: str, what: str = 'output folder') -> None:
    """Refuse a folder that cannot be created or written, before any work: an existing file, a read-only place.
    Creates nothing (a probe file is removed)."""
    import tempfile
    if osp.exists(path) and not osp.isdir(path):
        raise ToolError(f'{what} {path} is an existing file, not a folder')
    existing = osp.abspath(path)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise ToolError(f'cannot create {what} {path}: {existing} is a file, not a folder')
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ToolError(f'cannot write {what} {path}: nothing can be created in {existing} '
                        f'({err.strerror or err})') from None


def check_work_dir(work_dir: str) -> None:
    """The work dir can hold a run: not a file, creatable and writable, its lock path not a folder."""
    from .tools_common import LOCK_NAME
    check_output_dir(work_dir, 'work dir')
    lock = osp.join(work_dir, LOCK_NAME)
    if osp.isdir(lock):
        raise ToolError(f'work dir {work_dir}: the lock path {lock} is a folder; remove it')


def amp_device_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can be built here (it asserts a CUDA, NPU, MLU or MUSA device)."""
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def fit_amp_to_device(cfg, path: str, asked: bool = False) -> None:
    """Mixed precision where there is no device for it: ``--amp`` (``asked``) is refused in one line; a config's
    own ``AmpOptimWrapper`` (the COCO and ImageNet recipes) runs as a plain fp32 ``OptimWrapper``, with a warning
    line, instead of stopping in mmengine's assertion after the work dir was made."""
    optim = cfg.get('optim_wrapper', None)
    if not isinstance(optim, Mapping) or str(optim.get('type', '')).split('.')[-1] != 'AmpOptimWrapper' or \
            amp_device_available():
        return
    if asked:
        raise ToolError('--amp needs a CUDA (or NPU / MLU / MUSA) device, and none is available here; train without '
                        '--amp (fp32)')
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim.pop(key, None)
    optim['type'] = 'OptimWrapper'
    print(f'warning: {path}: optim_wrapper.type=AmpOptimWrapper needs a GPU and none is available; training in fp32 '
          f'with OptimWrapper instead (--cfg-options optim_wrapper.type=OptimWrapper asks for that without this line)',
          file=sys.stderr)


def check_resume_fits(cfg, checkpoint: str, path: str) -> None:
    """``--resume``: the backbone recorded in the checkpoint (``meta['scalenet']``, written by the shipped configs'
    ``ScaleNetCheckpointMetaHook``) must be the one the config builds. Otherwise mmengine stops after building the
    model with a traceback of missing / unexpected keys (another adapter bottleneck, depth, plan or growth). One
    line naming what differs and the ``--cfg-options`` that build the checkpoint's backbone; a checkpoint without
    a record, or a config whose backbone is not a ScaleNet one, is left to mmengine."""
    import torch

    from .checkpoint import META_KEY, CheckpointError, check_recorded_config, safe_load, saved_backbone
    from .checkpoint.recorded import _option_value
    backbone_cfg = (cfg.get('model', None) or {}).get('backbone', None)
    if not isinstance(backbone_cfg, Mapping) or str(backbone_cfg.get('type', '')).split('.')[-1] not in (
            'ScaleNetViT', 'ScaleNetSwin'):
        return
    try:
        obj = safe_load(checkpoint)
    except Exception:  # noqa: BLE001  (an unreadable file: mmengine's load names it)
        return
    meta = (obj.get('meta') or {}).get(META_KEY) if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return
    name = f'--resume checkpoint {checkpoint}'
    try:
        from mmdet.registry import MODELS
        with torch.device('meta'):
            model = MODELS.build(dict(backbone_cfg, init_cfg=None))
        saved = saved_backbone(meta, name)
        check_recorded_config(model, meta, name)
    except CheckpointError as err:
        raise ToolError(f'{err}; a resumed run continues the model it saved ({path})') from None
    except Exception:  # noqa: BLE001  (a config that does not build: the real build names it)
        return
    if saved is None:
        return
    own, theirs = model.config(), saved.config()
    differ = [k for k in theirs if own.get(k) != theirs[k]]
    if differ:
        raise ToolError(f'{name} was saved from another backbone than {path} builds ({", ".join(differ)} differ); a '
                        f'resumed run continues the model it saved: build it with --cfg-options '
                        + ' '.join(f'model.backbone.{k}={_option_value(theirs[k])}' for k in differ))
