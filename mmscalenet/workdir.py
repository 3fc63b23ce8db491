"""The work dir of a run: undoing what a failed start added (:class:`WorkDirGuard`), one run per work dir
(:class:`WorkDirLock`). Re-exported by ``mmscalenet.tools_common``."""
import os
import os.path as osp
import re
import shutil
import sys
from typing import Any, Callable, List, Mapping, Optional

from .tool_error import ToolError


class WorkDirGuard:
    """Remembers what a work dir held before a run, so a run that fails before training can undo what it added
    (its log folder and config copy), leaving nothing that looks like a finished run."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.created = not osp.exists(work_dir)
        self.before = set(os.listdir(work_dir)) if not self.created and osp.isdir(work_dir) else set()

    def undo(self) -> None:
        if os.environ.get('RANK', '0') != '0' or not osp.isdir(self.work_dir):
            return
        if self.created:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            return
        for name in set(os.listdir(self.work_dir)) - self.before:
            path = osp.join(self.work_dir, name)
            if osp.isdir(path) and re.fullmatch(r'\d{8}_\d{6}', name):
                shutil.rmtree(path, ignore_errors=True)
            elif osp.isfile(path) and name.endswith('.py'):
                os.unlink(path)


LOCK_NAME = '.mmscalenet.lock'


class WorkDirLock:
    """One training run per work dir: an exclusive ``flock`` on ``WORK_DIR/.mmscalenet.lock``, which also records
    the holder (pid, host, start time) for the message a second run prints.

    The operating system drops the lock when its process ends, however it ends (error, kill, crash), so a lock
    file left by a dead run is simply taken over, with a log line naming that run. ``release()`` removes the file.
    """

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self._fd: Optional[int] = None

    @staticmethod
    def describe(info: Mapping[str, Any]) -> str:
        return (f'pid {info.get("pid", "?")} on host {info.get("host", "?")}, started {info.get("start", "?")}'
                f'{": " + info["command"] if info.get("command") else ""}')

    def _read(self, fd: int) -> dict:
        import json
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            info = json.loads(os.read(fd, 65536).decode() or '{}')
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> None:
        """Take the lock or raise :class:`ToolError` naming the run that holds it."""
        import fcntl
        import json
        import socket
        import time
        os.makedirs(self.work_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self._read(fd)
                os.close(fd)
                raise _tool_error(f'work dir {self.work_dir} is in use by another run ({self.describe(holder)}); '
                                f'wait for it to finish, stop it, or choose another --work-dir') from None
            try:   # the file may have been removed by its previous holder between open and flock: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self._read(fd)
        if previous.get('pid'):
            log(f'work dir {self.work_dir}: taking over the lock left by a run that is no longer running '
                f'({self.describe(previous)})')
        info = dict(pid=os.getpid(), host=socket.gethostname(), start=time.strftime('%Y-%m-%d %H:%M:%S %z'),
                    command=' '.join(sys.argv)[:300])
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        _HELD_LOCKS.append(self)
        if not _AT_FORK:   # forked children (DataLoader workers) must not keep a dead run's lock alive
            os.register_at_fork(after_in_child=_drop_locks_in_child)
            _AT_FORK.append(True)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent; the work dir may already be gone)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        if self in _HELD_LOCKS:
            _HELD_LOCKS.remove(self)


_HELD_LOCKS: List[WorkDirLock] = []
_AT_FORK: List[bool] = []


def holds_lock(work_dir: str) -> bool:
    """Whether this process holds the lock of ``work_dir`` (a second ``flock`` on it from here would conflict)."""
    path = osp.realpath(osp.join(work_dir, LOCK_NAME))
    return any(lock._fd is not None and osp.realpath(lock.path) == path for lock in _HELD_LOCKS)


def _drop_locks_in_child() -> None:
    """In a forked child: close its copy of every held lock's descriptor, without unlocking or removing the file.
    flock belongs to the open file, which a child shares: a DataLoader worker orphaned by a killed run would
    otherwise hold the work dir for seconds after its parent died."""
    for lock in _HELD_LOCKS:
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    _HELD_LOCKS.clear()




def _tool_error(message: str) -> Exception:
    return ToolError(message)
