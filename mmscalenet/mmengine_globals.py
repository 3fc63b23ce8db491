"""mmengine's checkpoint data types on torch's ``weights_only`` allow-list, registered by ``import mmscalenet``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10 calls ``torch.load(path)``: its own
training checkpoints (``message_hub`` with ``HistoryBuffer`` logs, numpy scalars in ``meta``) then fail to load through
mmdet's ``init_detector`` / ``DetInferencer`` and mmengine's ``load_checkpoint`` with an ``UnpicklingError``. After
``import mmscalenet`` (or a config's ``custom_imports``) they load: :func:`register` adds exactly
:func:`mmscalenet.checkpoint.mmengine_io.mmengine_safe_globals` — ``HistoryBuffer``, ``argparse.Namespace``, numpy
arrays / dtypes / scalar types, and a ``getattr`` restricted to ``HistoryBuffer``'s statistics methods — to torch's
process-wide allow-list. ``weights_only`` stays on: these are plain data types whose unpickling calls no code of the
file's choosing, and any other global in a file (a function, ``os.system``, a class with a ``__reduce__``) is still
refused before anything in it runs. This is the one thing ``import mmscalenet`` changes outside its own registries
(``docs/reliability.md``).
"""
from typing import Any, List

import torch


def register() -> List[Any]:
    """Add mmengine's checkpoint types to torch's allow-list (once); returns the entries added by this call."""
    from .checkpoint.mmengine_io import mmengine_safe_globals
    present = set(torch.serialization.get_safe_globals())
    added = [g for g in mmengine_safe_globals() if g not in present]
    torch.serialization.add_safe_globals(added)
    return added
