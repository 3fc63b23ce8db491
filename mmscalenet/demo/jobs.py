"""Run the demo's independent trainings side by side, one CPU thread each, with the same results as one by one.

Each job runs in a fresh (spawned) process on ``MMSCALENET_THREADS`` torch threads (default 1) and seeds itself
from the demo's seed, so its figures do not depend on which other job shares the machine or on the order they end.
``MMSCALENET_JOBS`` sets how many run at once (default: the number of cores, at most 2); 1 runs them in this process.
"""
import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Dict, Sequence, Tuple

Job = Tuple[str, Callable[..., Any], tuple]   # (name, module-level function, its arguments)


def num_jobs() -> int:
    default = min(2, os.cpu_count() or 1)
    return max(1, int(os.environ.get('MMSCALENET_JOBS', default)))


@contextlib.contextmanager
def single_threaded():
    """Run the demo's trainings on ``MMSCALENET_THREADS`` torch threads (default 1), then restore the count.

    Models this small gain little from a second thread, and on a busy 2-core machine two spinning OpenMP threads made
    a training step ~6x slower (measured: 0.21 s vs 1.29 s per step). A fixed count also fixes the results: CPU
    kernels split their reductions by thread count, so another count gives other rounding (and other figures).
    """
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get('MMSCALENET_THREADS', '1')))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    import mmscalenet  # noqa: F401  (a spawned process registers the modules itself)
    with single_threaded():
        return fn(*args)


def run_jobs(jobs: Sequence[Job]) -> Dict[str, Any]:
    """``{name: fn(*args)}`` for every job; at most :func:`num_jobs` at once. A failing job raises its error."""
    workers = min(num_jobs(), len(jobs))
    if workers <= 1:
        return {name: _call(fn, args) for name, fn, args in jobs}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = {name: pool.submit(_call, fn, args) for name, fn, args in jobs}
        return {name: future.result() for name, future in futures.items()}
