"""Training hooks (registered in mmdet's ``HOOKS``).

* ``StopOnNonFiniteLossHook``: stops training with a clear error naming the iteration as soon as a loss is NaN or
  infinite, before any later hook (the checkpoint hook) can save the broken weights.
* ``ScaleNetCheckpointMetaHook``: writes the ScaleNet metadata (arch, depth plan, adapter settings) of the model's
  ``ScaleNetViT`` into every checkpoint mmengine saves, so a training checkpoint can be reloaded at another depth
  or exported (``tools/export.py``) without its config.

``tools/train.py`` adds both to ``custom_hooks`` unless the config already has them.
"""
import math
from typing import Any, Dict, Optional

from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from ..checkpoint import META_KEY, scalenet_meta


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
        from ..models.vit import ScaleNetViT
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for prefix, module in model.named_modules():
            if isinstance(module, ScaleNetViT):
                meta = checkpoint.setdefault('meta', {})
                meta[META_KEY] = scalenet_meta(module)
                meta[f'{META_KEY}_prefix'] = f'{prefix}.' if prefix else ''
                return
