"""mmengine integration, opt-in: safe checkpoint loading and atomic checkpoint writes for mmengine 0.10.

mmengine 0.10 calls ``torch.load(path)`` without ``weights_only`` and writes checkpoints with a plain ``open()``.
:func:`safe_mmengine_io` fixes both for the duration of a ``with`` block and restores mmengine's own functions on
exit; ``import mmscalenet`` changes nothing in mmengine. The tools run inside it, and ``SafeCheckpointIOHook``
(``mmscalenet/engine/hooks.py``, in the shipped configs' ``default_hooks``) enters it for a runner's run.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Dict, Iterator, Optional

from .io import _load_safetensors, _torch_load_safe, allowed_globals, atomic_write
from .safe_globals import mmengine_safe_globals  # noqa: F401  (its home until it moved out of this module)


def _mmengine_load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file checkpoint loader, with ``weights_only=True`` and mmengine's data types allowed."""
    filename = os.path.expanduser(os.fspath(filename))
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if filename.endswith('.safetensors'):
        return _load_safetensors(filename)
    return _torch_load_safe(filename, map_location=map_location)


def _atomic_local_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` writing through a temporary file + rename (checkpoints, ``last_checkpoint``)."""
    atomic_write(filepath, lambda f: f.write(obj))


def _atomic_local_put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
    atomic_write(filepath, lambda f: f.write(obj.encode(encoding)))


class _AtomicTextWriter:
    """A text file opened for writing that appears under its name only when closed without error."""

    def __init__(self, path: str, encoding: Optional[str]):
        self.path, self.encoding, self.parts = path, encoding or 'utf-8', []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def __enter__(self) -> '_AtomicTextWriter':
        return self

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            data = ''.join(self.parts).encode(self.encoding)
            atomic_write(self.path, lambda f: f.write(data))


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    """``open`` as seen by mmengine's ``CheckpointHook``: its ``last_checkpoint`` pointer is written atomically
    (a kill leaves the previous pointer or the new one, never an empty file); everything else is ``open``."""
    import builtins
    if mode in ('w', 'wt') and os.path.basename(os.fspath(file)) == 'last_checkpoint':
        return _AtomicTextWriter(os.fspath(file), kwargs.get('encoding'))
    return builtins.open(file, mode, *args, **kwargs)




_LOCK = threading.Lock()
_DEPTH = 0                       # how many safe_mmengine_io() blocks are open (nested, or several runners)
_SAVED: Dict[str, Any] = {}      # mmengine's originals while they are replaced
_ABSENT = object()


def _install() -> None:
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    _SAVED.update(put=LocalBackend.__dict__['put'], put_text=LocalBackend.__dict__['put_text'],
                  loader=CheckpointLoader._schemes.get(''), hook_open=vars(checkpoint_hook).get('open', _ABSENT),
                  globals=allowed_globals(mmengine_safe_globals()))
    _SAVED['globals'].__enter__()
    CheckpointLoader.register_scheme(prefixes='', loader=_mmengine_load_from_local, force=True)
    LocalBackend.put = _atomic_local_put
    LocalBackend.put_text = _atomic_local_put_text
    checkpoint_hook.open = _checkpoint_hook_open


def _restore() -> None:
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    LocalBackend.put, LocalBackend.put_text = _SAVED.pop('put'), _SAVED.pop('put_text')
    loader = _SAVED.pop('loader')
    if CheckpointLoader._schemes.get('') is _mmengine_load_from_local and loader is not None:
        CheckpointLoader.register_scheme(prefixes='', loader=loader, force=True)   # others' schemes stay
    hook_open = _SAVED.pop('hook_open')
    if hook_open is _ABSENT:
        vars(checkpoint_hook).pop('open', None)
    else:
        checkpoint_hook.open = hook_open
    _SAVED.pop('globals').__exit__(None, None, None)


@contextlib.contextmanager
def safe_mmengine_io() -> Iterator[None]:
    """Inside the block, mmengine loads and saves checkpoints safely; on exit its own functions are back.

    * Loading: mmengine's local-file checkpoint loader (``resume``, ``load_from``, ``init_cfg=Pretrained``,
      ``tools/test.py``) is replaced by one that passes ``weights_only=True`` and allows the data types mmengine
      itself writes (:func:`mmengine_safe_globals`); those are also added to torch's allow-list so mmengine's
      other loaders (URLs) accept them. A file carrying any other pickled object is refused with a
      :class:`~.io.CheckpointError`, and nothing in it runs. ``weights_only=False`` is never used.
    * Saving: ``LocalBackend.put`` / ``put_text`` (what ``Runner.save_checkpoint`` goes through) write a temporary
      file and rename it, so a kill during a save leaves the previous checkpoint intact; the ``last_checkpoint``
      pointer, which ``CheckpointHook`` writes with a plain ``open()``, gets the same through an ``open`` placed in
      that module's namespace (:func:`_checkpoint_hook_open`).

    Re-entrant and nested-safe: the first block to open installs, the last to close restores. Does nothing where
    mmengine is not installed.
    """
    global _DEPTH
    try:
        import mmengine  # noqa: F401
    except ImportError:   # torch-only installation: nothing to make safe
        yield
        return
    with _LOCK:
        if _DEPTH == 0:
            _install()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                _restore()


def safe_io_active() -> bool:
    """Whether a :func:`safe_mmengine_io` block is open (in any thread)."""
    return _DEPTH > 0
