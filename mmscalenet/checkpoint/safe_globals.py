"""The plain-data types mmengine writes into its checkpoints, allowed by every ``weights_only`` load here.

Its own module so that ``io`` (which allows them) and ``mmengine_io`` (which uses ``io``) do not import each other.
"""
from __future__ import annotations

import argparse
import pickle
from typing import Any, List


def mmengine_safe_globals() -> List[Any]:
    """The non-tensor types mmengine 0.10 writes into its checkpoints (``meta``, ``message_hub``, schedulers).

    Found by saving real mmengine checkpoints (training, resume, ``HistoryBuffer`` logs) and loading them with
    ``weights_only=True``: each entry is plain data. Anything else in a file (a function, ``os.system``, a class
    with a ``__reduce__``) stays refused.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = getattr(np, '_core', None)
    multiarray = multiarray.multiarray if multiarray is not None else np.core.multiarray
    out: List[Any] = [HistoryBuffer, argparse.Namespace, np.ndarray, np.dtype]
    # numpy 1 pickles name numpy.core.multiarray, numpy 2 numpy._core.multiarray: allow both spellings
    for name in ('_reconstruct', 'scalar'):
        fn = getattr(multiarray, name)
        out += [(fn, f'numpy.core.multiarray.{name}'), (fn, f'numpy._core.multiarray.{name}')]
    # dtype classes (numpy.dtypes.Float64DType, ...) and scalar types that meta / HistoryBuffer hold
    for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.bool_, np.complex64, np.complex128, np.str_, np.bytes_):
        out += [type(np.dtype(t)), t]
    # HistoryBuffer pickles its statistics table as getattr(HistoryBuffer, 'mean') etc.: allow exactly that,
    # through a getattr that refuses every other object and attribute (a general getattr would reach any method).
    out += [(_history_buffer_getattr, 'builtins.getattr'), (_history_buffer_getattr, '__builtin__.getattr')]
    return out


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the statistics methods of mmengine's ``HistoryBuffer`` (used while unpickling)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    # its public methods only (min, max, current, mean and registered statistics): they compute on a buffer's data
    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_') and (
            name in vars(HistoryBuffer) or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'Unsupported global: GLOBAL builtins.getattr on {obj!r} (attribute {name!r}): '
                                 f'only HistoryBuffer statistics are allowed')
