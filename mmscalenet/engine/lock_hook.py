"""``WorkDirLockHook``: the one-run-per-work-dir lock of ``tools/train.py`` (:class:`~mmscalenet.workdir.WorkDirLock`)
for training started by other programs, mmdet's own ``tools/train.py`` among them. The shipped configs list it in
``default_hooks`` (``work_dir_lock``).

A training run into a work dir that another run holds stops in ``before_run``, before its first checkpoint, with the
line that names the holder (pid, host, start time); a run that finds the lock free holds it until ``after_run``, or
until the interpreter exits when the run raised (mmengine calls no hook then). Testing (``Runner.test``) takes no
lock, and neither does a process that already holds the work dir's lock (``tools/train.py`` takes it before the
runner exists), nor a rank other than 0.
"""
from mmdet.registry import HOOKS

from ..workdir import WorkDirLock, holds_lock
from .hooks import HeldForTheRunHook


@HOOKS.register_module()
class WorkDirLockHook(HeldForTheRunHook):
    priority = 'VERY_HIGH'   # before any hook of before_run that might write into the work dir

    def open(self, runner):
        from mmengine.dist import get_rank
        from mmengine.runner import BaseLoop
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)   # built by train(), not by test()
        if not training or get_rank() != 0 or holds_lock(runner.work_dir):
            return None
        lock = WorkDirLock(runner.work_dir)
        lock.acquire(log=runner.logger.warning)   # ToolError naming the run that holds it
        return lock.release
