"""Reading and writing checkpoint files safely: no pickled code runs, no half-written file is ever left.

Every load uses ``torch.load(weights_only=True)``: a file that carries pickled objects other than tensors, plain
containers and an explicit allow-list of data types is refused, and its payload never runs. Writes go to a
temporary file that is renamed into place. Also here: the tensors' SHA-256 that the ScaleNet format stores, the
NaN / inf check, and the constants every reader needs (``META_KEY``, ``FORMAT_VERSION``). Pure torch at import
time (timm only for ``timm:NAME`` sources, safetensors only for ``.safetensors`` files).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import pickle
import re
import tempfile
import threading
import zipfile
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch

FORMAT_VERSION = 2   # 2: one record for both families (meta.py); 1 still reads
META_KEY = 'scalenet'
# Objects that official DeiT / MAE checkpoints carry besides tensors; plain data, safe to allow.
_SAFE_EXTRA_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not matching the model."""


# ---- reading ---------------------------------------------------------------------------------------------------
def _refusal(path: str, err: Exception) -> CheckpointError:
    text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    m = re.search(r'Unsupported operand (\d+)', text)
    if m:
        return CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt, or a pickle using opcode '
                               f'{m.group(1)}, which safe loading does not allow); nothing in it was executed')
    if 'GLOBAL' in text or 'Unsupported' in text or 'Can only' in text or 'Weights only' in text:
        return CheckpointError(
            f'refused to load {path}: it carries pickled objects that are not tensors or plain data '
            f'({_unsupported_global(err) or first}). Loading it could run code stored in the file, so nothing in it '
            f'was executed. If you made the file yourself and trust it, re-save its tensors as a plain state dict '
            f'(or as .safetensors).')
    return CheckpointError(f'{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {first}')


@contextlib.contextmanager
def allowed_globals(items: Sequence[Any]) -> Iterator[None]:
    """Add ``items`` to torch's ``weights_only`` allow-list inside the block; on exit remove exactly those that
    were not allowed before (``torch.serialization.safe_globals`` removes them all, even an outer block's)."""
    added = [g for g in items if g not in set(torch.serialization.get_safe_globals())]
    torch.serialization.add_safe_globals(added)
    try:
        yield
    finally:
        keep = [g for g in torch.serialization.get_safe_globals() if g not in set(added)]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(keep)


@functools.lru_cache(maxsize=None)
def _default_safe_globals() -> tuple:
    """What every load here allows: DeiT's ``Namespace`` and, where mmengine is installed, the plain data types
    mmengine writes into its checkpoints (:func:`~.safe_globals.mmengine_safe_globals`)."""
    try:
        from .safe_globals import mmengine_safe_globals
        return tuple(_SAFE_EXTRA_GLOBALS) + tuple(mmengine_safe_globals())
    except ImportError:   # torch-only installation
        return tuple(_SAFE_EXTRA_GLOBALS)


def _torch_load_safe(path: str, map_location: Any = 'cpu', extra_globals: Sequence[Any] = ()) -> Any:
    """``torch.load(weights_only=True)`` with clear errors; ``extra_globals`` are allowed for this call only."""
    try:
        with allowed_globals(list(_default_safe_globals()) + list(extra_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError as err:   # refused by forced_weights_only's torch.load: name this path
        raise _refusal(path, err.original) if hasattr(err, 'original') else err from None
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError,
            TypeError, IndexError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise _refusal(path, err) from None


def safe_load(path: str) -> Any:
    """Load a ``.pth`` / ``.pt`` / ``.safetensors`` file without executing any pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        return _load_safetensors(path)
    return _torch_load_safe(path)


def _unsupported_global(err: Exception) -> Optional[str]:
    """The blocked global named in torch's message: ``Unsupported global: GLOBAL os.system`` (torch <= 2.5) or
    ``unsupported GLOBAL posix.system whose module posix is blocked`` (torch 2.6+)."""
    m = re.search(r'unsupported (?:global: )?GLOBAL ([\w.]+)', str(err), flags=re.IGNORECASE)
    return f'blocked global {m.group(1)}' if m else None


def _load_safetensors(path: str) -> Dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open
    try:
        tensors = load_file(path, device='cpu')
        with safe_open(path, framework='pt') as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path} is not a readable safetensors file: {err}') from None
    out: Dict[str, Any] = {'state_dict': tensors}
    if 'sha256' in metadata:
        out['sha256'] = metadata['sha256']
    if META_KEY in metadata:
        try:
            out['meta'] = {META_KEY: json.loads(metadata[META_KEY])}
        except json.JSONDecodeError as err:
            raise CheckpointError(f'{path}: its "{META_KEY}" metadata is not valid JSON ({err})') from None
    return out


def resolve_checkpoint(source: Union[str, Mapping[str, Any]]) -> Any:
    """A loaded object from a path, an ``http(s)://`` URL, ``timm:NAME`` (timm's pretrained weights), or a dict."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a path, URL, "timm:NAME" or a state dict, got {type(source).__name__}')
    source = os.fspath(source)
    if source.startswith('timm:'):
        return _timm_pretrained_state(source[len('timm:'):])
    if source.startswith(('http://', 'https://')):
        return load_url_safe(source)
    return safe_load(source)


def load_url_safe(url: str, map_location: Any = 'cpu', model_dir: Optional[str] = None,
                  progress: bool = False) -> Any:
    """``torch.hub.load_state_dict_from_url`` (download, cache) with ``weights_only=True`` and the allow-list:
    a downloaded file that carries pickled code is refused like a local one (the hub's default is
    ``weights_only=False``)."""
    try:
        with forced_weights_only():
            return torch.hub.load_state_dict_from_url(url, model_dir=model_dir, map_location=map_location,
                                                      progress=progress, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(url, err) from None
    except CheckpointError as err:   # refused inside forced_weights_only: name the URL, not the hub's cache file
        raise _refusal(url, err.original) if hasattr(err, 'original') else err from None


_FORCE_LOCK = threading.Lock()
_FORCE_DEPTH = 0
_REAL_LOAD = torch.serialization.load   # what torch.load is; the forced wrapper calls this
_REPLACED: Dict[str, Any] = {}


def _forced_load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: Any = None,
                 **kwargs: Any) -> Any:
    """``torch.load`` as seen inside :func:`forced_weights_only`: always ``weights_only=True`` with the
    allow-list, whatever the caller asked (mmengine's URL / pavi / s3 loaders and torch.hub pass False)."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, 'name', '<checkpoint stream>')
    try:
        with allowed_globals(_default_safe_globals()):
            return _REAL_LOAD(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        refusal = _refusal(str(name), err)
        refusal.original = err   # callers that know a better name (a URL) re-word it
        raise refusal from None


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Inside the block every ``torch.load`` / ``torch.serialization.load`` (any module, any thread) runs with
    ``weights_only=True`` and the allow-list, so no third-party loader (URLs, hubs, cloud schemes) can unpickle
    code; re-entrant, restored on exit. A refused file raises :class:`CheckpointError` naming the blocked global."""
    global _FORCE_DEPTH
    with _FORCE_LOCK:
        if _FORCE_DEPTH == 0:
            _REPLACED.update(load=torch.load, serialization_load=torch.serialization.load)
            torch.load = torch.serialization.load = _forced_load
        _FORCE_DEPTH += 1
    try:
        yield
    finally:
        with _FORCE_LOCK:
            _FORCE_DEPTH -= 1
            if _FORCE_DEPTH == 0:
                torch.load, torch.serialization.load = _REPLACED.pop('load'), _REPLACED.pop('serialization_load')


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (DNS included)."""
    import socket
    import urllib.parse
    parsed = urllib.parse.urlparse(url)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == 'http' else 443)
    if not host:
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _timm_pretrained_state(name: str) -> Dict[str, torch.Tensor]:
    """timm's pretrained weights for ``name``: from timm's cache, or downloaded when the host answers.

    Without a network (``HF_HUB_OFFLINE=1``, or the weights' host unreachable within 3 s) only cached weights are
    used, and a miss fails at once with one line saying to pass a local file, instead of the hub's minute of
    retries ending in ``LocalEntryNotFoundError``.
    """
    import timm  # real users: timm downloads and caches the weights
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None:
        raise CheckpointError(f'"timm:{name}": timm has no pretrained weights of that name (see '
                              f'timm.list_pretrained())')
    hub = getattr(cfg, 'hf_hub_id', None)
    url = (os.environ.get('HF_ENDPOINT', 'https://huggingface.co') if hub else getattr(cfg, 'url', None)) or ''
    offline = os.environ.get('HF_HUB_OFFLINE', '0').lower() in ('1', 'true', 'yes', 'on') or not _reachable(url)
    if not offline:
        with forced_weights_only():   # whatever the timm version: its hub / URL loaders unpickle no code
            return timm.create_model(name, pretrained=True).state_dict()
    from huggingface_hub import constants
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # the cache only: no request, no retries
    try:
        with forced_weights_only():
            return timm.create_model(name, pretrained=True).state_dict()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001  (hub / urllib errors of every kind mean: not cached)
        why = type(err).__name__
        raise CheckpointError(f'"timm:{name}" is not in the local cache and {url or "its host"} cannot be reached '
                              f'(offline?; {why}): download the weights where there is a network and pass the '
                              f'local file instead, e.g. init_cfg=dict(type="Pretrained", '
                              f'checkpoint="/path/to/{name}.pth")') from None
    finally:
        constants.HF_HUB_OFFLINE = saved


# ---- checksum and finiteness ------------------------------------------------------------------------------------
def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name): what the ScaleNet format stores
    as ``sha256`` and checks at load, so a flipped bit anywhere in the tensors is found."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f'{key}\0{t.dtype}\0{tuple(t.shape)}\0'.encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())   # the buffer itself, no copy
    return h.hexdigest()


def verify_digest(state: Mapping[str, torch.Tensor], expected: Any, name: str) -> None:
    """Raise :class:`CheckpointError` naming ``name`` when ``state`` does not hash to ``expected``."""
    if not isinstance(expected, str) or not re.fullmatch(r'[0-9a-f]{64}', expected):
        raise CheckpointError(f'{name}: its sha256 field is malformed ({str(expected)[:80]!r}): the file is damaged '
                              f'(verify_checksum=False / --skip-checksum loads it anyway)')
    actual = tensor_digest(state)
    if actual != expected:
        raise CheckpointError(f'{name}: the tensors do not match the SHA-256 stored in the file (stored '
                              f'{expected[:12]}..., computed {actual[:12]}...): the file is corrupt; '
                              f'verify_checksum=False / --skip-checksum loads it anyway')


def check_finite(state: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise :class:`CheckpointError` listing the tensors of ``state`` that hold NaN or infinite values."""
    bad = [k for k, v in state.items()
           if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ', '.join(bad[:6]) + (f', ... ({len(bad)} in all)' if len(bad) > 6 else '')
        raise CheckpointError(f'{name}: {len(bad)} tensor(s) hold NaN or infinite values ({shown}); refused '
                              f'(allow_nonfinite=True / --allow-nonfinite accepts them)')

# ---- atomic writes ------------------------------------------------------------------------------------------------
def atomic_write(path: str, write: Callable[[Any], None], suffix: str = '.part') -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    A crash or kill at any point leaves either the previous ``path`` or the complete new one, never half a file
    (the temporary ``.tmp-*`` file of a killed writer is left behind, under a name nothing loads).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.tmp-{os.path.basename(path)}.', suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _os_error_behind(err)
        if cause is not None and cause is not err:   # e.g. torch.save turns "file too large" into a RuntimeError
            raise cause from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _os_error_behind(err: BaseException) -> Optional[OSError]:
    """The ``OSError`` (disk full, file too large) that ``err`` is or was raised while handling, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _file_mode(path: str) -> int:
    """The mode an ordinary ``open(path, 'w')`` would give: the existing file's, else 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))
