"""Training hooks (registered in mmdet's ``HOOKS``).

* ``StopOnNonFiniteLossHook``: stops training with a clear error naming the iteration as soon as a loss is NaN or
  infinite, before any later hook (the checkpoint hook) can save the broken weights.
* ``ScaleNetCheckpointMetaHook``: writes the ScaleNet metadata (arch, depth plan, adapter settings) of the model's
  ``ScaleNetViT`` into every checkpoint mmengine saves, so a training checkpoint can be reloaded at another depth
  or exported (``tools/export.py``) without its config.
* ``ExactResumeHook``: saves the random number generators' states and the sampler's position in every checkpoint
  and restores them on ``--resume``, so a resumed run draws the same drop-path masks and augmentations as an
  uninterrupted one.

``tools/train.py`` adds all three to ``custom_hooks`` unless the config already has them.

* ``SafeCheckpointIOHook``: mmengine loads and saves checkpoints safely (``weights_only=True``, atomic writes)
  while the runner runs, and mmengine's own functions are back afterwards (:func:`safe_mmengine_io`). The shipped
  configs list it in ``default_hooks`` (``safe_io``), so mmdet's own ``tools/train.py`` is safe with them too.
"""
import math
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from ..checkpoint import META_KEY, scalenet_meta
from ..checkpoint.mmengine_io import safe_mmengine_io


@HOOKS.register_module()
class StopOnNonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a logged loss becomes NaN or infinite.

    Args:
        keys: which entries of the training outputs to check; ``None`` checks every entry whose name contains
            ``'loss'``.
    """

    priority = 'ABOVE_NORMAL'   # before the checkpoint (VERY_LOW) and logger (BELOW_NORMAL) hooks

    def __init__(self, keys: Optional[list] = None):
        self.keys = keys

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[Dict[str, Any]] = None) -> None:
        if not outputs:
            return
        bad = {}
        for name, value in outputs.items():
            if (self.keys is None and 'loss' not in name) or (self.keys is not None and name not in self.keys):
                continue
            number = float(value.detach().float().mean()) if hasattr(value, 'detach') else float(value)
            if not math.isfinite(number):
                bad[name] = number
        if bad:
            where = f'iteration {runner.iter + 1}'
            if getattr(runner.train_loop, '_max_epochs', None) is not None:
                where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1})'
            raise FloatingPointError(
                f'non-finite loss at training {where}: '
                + ', '.join(f'{k}={v}' for k, v in bad.items())
                + '. Training stopped; no checkpoint was written for this iteration. Lower the learning rate, '
                  'enable gradient clipping (optim_wrapper.clip_grad=dict(max_norm=1.0)) or check the data of this '
                  'batch, then resume from the last checkpoint (--resume).')


@HOOKS.register_module()
class ScaleNetCheckpointMetaHook(Hook):
    """Add ``meta['scalenet']`` (and ``meta['scalenet_prefix']``, the backbone's key prefix) to each checkpoint."""

    priority = 'NORMAL'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        from ..models.swin import ScaleNetSwin
        from ..models.vit import ScaleNetViT
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for prefix, module in model.named_modules():
            if isinstance(module, (ScaleNetViT, ScaleNetSwin)):
                meta = checkpoint.setdefault('meta', {})
                meta[META_KEY] = scalenet_meta(module)
                meta[f'{META_KEY}_prefix'] = f'{prefix}.' if prefix else ''
                return


class HeldForTheRunHook(Hook):
    """A hook that opens something for the run in ``before_run`` (:meth:`open` returns what undoes it) and undoes
    it in ``after_run``, or, when the run raised (mmengine 0.10 calls no hook then), at the latest at the
    interpreter's exit: an ``atexit`` handler, run before Python tears its import system down (left to garbage
    collection, the undo ran after that: a second traceback, 'sys.meta_path is None', after mmdet's tools failed)."""

    def __init__(self) -> None:
        self._undo = None

    def open(self, runner):
        """Open it; return a callable that undoes it, or None when there is nothing to hold."""
        raise NotImplementedError

    def before_run(self, runner) -> None:
        import atexit
        self.close()
        self._undo = self.open(runner)
        if self._undo is not None:
            atexit.register(self.close)

    def after_run(self, runner) -> None:
        self.close()

    def close(self) -> None:
        """Undo what :meth:`open` did, if it is open (idempotent)."""
        import atexit
        undo, self._undo = self._undo, None
        if undo is not None:
            atexit.unregister(self.close)
            undo()


@HOOKS.register_module()
class SafeCheckpointIOHook(HeldForTheRunHook):
    """Open :func:`~mmscalenet.checkpoint.mmengine_io.safe_mmengine_io` in ``before_run``, close it in ``after_run``.

    mmengine calls ``before_run`` before ``load_or_resume`` (``resume``, ``load_from``) and before the model's
    ``init_cfg`` weights are loaded, and every checkpoint save happens between the two. After an exception mmengine
    stays patched until :meth:`close`: the next ``before_run`` of this hook, or the interpreter's exit
    (:class:`HeldForTheRunHook`). The project's tools run the whole runner inside ``safe_mmengine_io()`` instead,
    which restores on exceptions too.
    """

    priority = 'VERY_HIGH'   # before any other hook's before_run, which might load a checkpoint

    def open(self, runner):
        block = safe_mmengine_io()
        block.__enter__()
        return lambda: block.__exit__(None, None, None)


RESUME_KEY = 'scalenet_resume'


def rng_state() -> Dict[str, Any]:
    """The states of torch (CPU and, when initialised, CUDA), numpy and python ``random``, as plain data and
    tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    out = dict(torch=torch.get_rng_state(),
               numpy=dict(kind=str(kind), keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                          has_gauss=int(has_gauss), cached_gaussian=float(cached)),
               python=dict(version=int(version), internal=list(internal), gauss_next=gauss_next))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out['cuda'] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA only when both the state and CUDA are there)."""
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss_next']))
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """A data iterator that restores the RNG states once ``count`` batches have been drawn from it."""

    def __init__(self, inner: Any, count: int, state: Dict[str, Any]):
        self.inner, self.count, self.state = inner, count, state

    def __iter__(self) -> '_RestoreAfter':
        return self

    def __next__(self) -> Any:
        batch = next(self.inner)
        self.count -= 1
        if self.count == 0:
            set_rng_state(self.state)
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make ``--resume`` continue the random streams where the checkpoint left them.

    * Every checkpoint gets ``scalenet_resume``: the RNG states at the moment of saving (:func:`rng_state`) and the
      sampler's position (epoch, iteration, batches of the epoch already trained).
    * After a resume (not after ``load_from``) the states are restored at the start of the next training epoch
      (``before_train_epoch``), after everything mmengine does on resume (it may re-seed) and right before the data
      loader draws its first batch; for iteration-based loops, after mmengine has drawn the batches it skips.
    * Validation and testing run with a saved copy of the states, put back afterwards, so evaluating does not
      change the random numbers that training sees: a checkpoint written at the end of an epoch then holds the
      exact states the next epoch starts from, whether or not validation follows.

    The sampler needs nothing restored for epoch-based training: mmengine's samplers shuffle from (seed, epoch),
    and the checkpoints are written at epoch ends. Resuming an epoch-based run from a checkpoint written in the
    middle of an epoch (by iteration) logs a warning: mmengine restarts that epoch, which is not exact.
    """

    priority = 'VERY_HIGH'   # restore before any other hook of before_train_epoch runs

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._outside_eval: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.runner import EpochBasedTrainLoop
        loop = runner.train_loop
        in_epoch = runner.iter % len(loop.dataloader) if isinstance(loop, EpochBasedTrainLoop) else 0
        checkpoint[RESUME_KEY] = dict(rng=rng_state(), sampler=dict(
            epoch=int(checkpoint.get('meta', {}).get('epoch', runner.epoch)), iter=int(runner.iter),
            batches_in_epoch=int(in_epoch)))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(RESUME_KEY)
        if not getattr(runner, '_resume', False) or not isinstance(saved, dict) or 'rng' not in saved:
            return    # load_from (a new run), or a checkpoint of an older run: nothing to continue
        self._pending = saved['rng']
        from mmengine.runner import EpochBasedTrainLoop
        in_epoch = saved.get('sampler', {}).get('batches_in_epoch', 0)
        if in_epoch and isinstance(getattr(runner, '_train_loop', None), EpochBasedTrainLoop):
            runner.logger.warning(
                f'the checkpoint was written after {in_epoch} batches of an epoch (iteration '
                f'{saved["sampler"]["iter"]}): mmengine restarts that epoch from its first batch, so this resume '
                f'is not exact; resume from a checkpoint written at the end of an epoch for an exact one')

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        from mmengine.runner import IterBasedTrainLoop
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            # mmengine now skips the trained batches by drawing them (which uses random numbers): restore after
            loop.dataloader_iterator = _RestoreAfter(loop.dataloader_iterator, loop.iter, self._pending)
        else:
            set_rng_state(self._pending)
        self._pending = None

    def _hold(self, runner) -> None:
        self._outside_eval = rng_state()

    def _release(self, runner, *args: Any, **kwargs: Any) -> None:
        if self._outside_eval is not None:
            set_rng_state(self._outside_eval)
            self._outside_eval = None

    before_val = before_test = _hold
    after_val = after_test = _release
