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
from typing import Any, Dict, Iterator, List, Optional

from .io import CheckpointError, _load_safetensors, _torch_load_safe, allowed_globals, atomic_write, forced_weights_only
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



def _refuse_config_text(cfg_str: str, file_format: str) -> Any:
    """``Config.fromstring`` inside the block: Python config text is executed when parsed, and mmengine calls this
    only on text read from a checkpoint (``Runner.resume``'s ``meta.config``, ``BaseInferencer`` / mmdet's
    ``DetInferencer(model=None, weights=...)`` and its ``meta.cfg``), so it is refused instead of run."""
    if file_format in ('.json', '.yaml', '.yml'):
        return _SAVED['fromstring'](cfg_str, file_format)
    raise CheckpointError('refused to execute the config text stored in a checkpoint (Python code inside a '
                          'checkpoint could do anything): pass the config file itself (e.g. '
                          'DetInferencer(model=CONFIG.py, weights=CKPT))')


@contextlib.contextmanager
def _removals_after_the_save(hook) -> Iterator[List[tuple]]:
    """Collect the file removals ``CheckpointHook`` makes while it saves, to run them once the save succeeded."""
    backend, later = hook.file_backend, []
    own = {k: backend.__dict__[k] for k in ('remove', 'rmtree') if k in backend.__dict__}   # an outer save's
    remove, rmtree = backend.remove, backend.rmtree
    backend.remove = lambda path: later.append((remove, path))
    backend.rmtree = lambda path: later.append((rmtree, path))
    try:
        yield later
    finally:   # nested saves (mmengine calls one saving method from another) restore what they found
        for key in ('remove', 'rmtree'):
            if key in own:
                setattr(backend, key, own[key])
            else:
                backend.__dict__.pop(key, None)


def _new_before_old(name: str):
    """A ``CheckpointHook`` method that writes the new checkpoint (and ``last_checkpoint``) before it removes the
    old ones: mmengine removes first (``max_keep_ckpts``), so a kill during the save could leave no checkpoint."""
    def method(self, runner, *args, **kwargs):
        with _removals_after_the_save(self) as later:
            _SAVED[name](self, runner, *args, **kwargs)
        written = {getattr(self, 'last_ckpt', None), getattr(self, 'best_ckpt_path', None),
                   *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for remove, path in later:   # only reached when the save completed
            if path not in written:   # never the file just written under the same name
                remove(path)
    method.__name__ = name
    return method


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
    _SAVED['forced'] = forced_weights_only()
    _SAVED['forced'].__enter__()
    from mmengine.config import Config
    from mmengine.hooks import CheckpointHook
    _SAVED['fromstring_descriptor'] = Config.__dict__['fromstring']
    _SAVED['fromstring'] = _SAVED['fromstring_descriptor'].__func__
    Config.fromstring = staticmethod(_refuse_config_text)
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        _SAVED[name] = CheckpointHook.__dict__[name]
        setattr(CheckpointHook, name, _new_before_old(name))
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
    _SAVED.pop('forced').__exit__(None, None, None)
    from mmengine.config import Config
    from mmengine.hooks import CheckpointHook
    Config.fromstring = _SAVED.pop('fromstring_descriptor')   # the very same staticmethod object
    _SAVED.pop('fromstring')
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        setattr(CheckpointHook, name, _SAVED.pop(name))


@contextlib.contextmanager
def safe_mmengine_io() -> Iterator[None]:
    """Inside the block, mmengine loads and saves checkpoints safely; on exit its own functions are back.

    * Loading: mmengine's local-file checkpoint loader (``resume``, ``load_from``, ``init_cfg=Pretrained``,
      ``tools/test.py``) is replaced by one that passes ``weights_only=True`` and allows the data types mmengine
      itself writes (:func:`mmengine_safe_globals`); those are also added to torch's allow-list so mmengine's
      other loaders accept them. Every ``torch.load`` in the block is forced to ``weights_only=True``
      (:func:`~.io.forced_weights_only`), so mmengine's ``http(s)://``, ``torchvision://``, ``open-mmlab://``,
      ``pavi://`` and ``s3://`` loaders (which pass ``weights_only=False``) are safe too. A file carrying any other
      pickled object is refused with a :class:`~.io.CheckpointError`, and nothing in it runs.
    * Config text stored in a checkpoint is never executed: ``Config.fromstring`` refuses Python text in the
      block (mmengine uses it only for ``meta.config`` on resume and for ``BaseInferencer(model=None)``).
    * Saving: ``LocalBackend.put`` / ``put_text`` (what ``Runner.save_checkpoint`` goes through) write a temporary
      file and rename it, so a kill during a save leaves the previous checkpoint intact; the ``last_checkpoint``
      pointer, which ``CheckpointHook`` writes with a plain ``open()``, gets the same through an ``open`` placed in
      that module's namespace (:func:`_checkpoint_hook_open`). ``CheckpointHook`` removes the checkpoints beyond
      ``max_keep_ckpts`` (and the previous best) only after the new one and the pointer are written.

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
