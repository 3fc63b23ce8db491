"""Run the demo's trainings side by side, one CPU thread each, with the same results as one by one.

Each job runs in a fresh (spawned) process on ``MMSCALENET_THREADS`` torch threads (default 1) and seeds itself
from the demo's seed, so its figures do not depend on which other job shares the machine or on the order they end.
``MMSCALENET_JOBS`` sets how many run at once (default: the number of cores, at most 2); 1 runs them in this process.
A job may wait for others (:func:`run_graph`: a detector waits for the classification run that writes its backbone),
so the halves of the demo overlap and no core idles while work is ready.
"""
import contextlib
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Dict, List, Sequence, Tuple

Job = Tuple[str, Callable[..., Any], tuple]   # (name, module-level function, its arguments)
GraphJob = Tuple[str, Callable[..., Any], tuple, Sequence[str]]   # ... and the names of the jobs it waits for


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
    return run_graph([(name, fn, args, ()) for name, fn, args in jobs])


def _check_graph(jobs: Sequence[GraphJob]) -> None:
    seen: List[str] = []
    for name, _, _, after in jobs:
        if name in seen:
            raise ValueError(f'two jobs are named {name!r}')
        late = [d for d in after if d not in seen]
        if late:
            raise ValueError(f'job {name!r} waits for {late}, which must come before it in the list')
        seen.append(name)


def run_graph(jobs: Sequence[GraphJob]) -> Dict[str, Any]:
    """``{name: fn(*args)}`` for every job, each started once the jobs it waits for have finished; at most
    :func:`num_jobs` at once, the ready jobs in list order (put the long ones first). A job lists only jobs before it.
    A failing job raises its error once the jobs already running have ended (their outputs are kept); the jobs not
    started are not started."""
    _check_graph(jobs)
    workers = min(num_jobs(), len(jobs))
    if workers <= 1:
        return {name: _call(fn, args) for name, fn, args, _ in jobs}
    pending, running, done = list(jobs), {}, {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        while pending or running:
            for job in [j for j in pending if all(d in done for d in j[3])][:workers - len(running)]:
                pending.remove(job)
                running[pool.submit(_call, job[1], job[2])] = job[0]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    done[name] = future.result()
                except BaseException:
                    pending.clear()
                    raise
    return done
