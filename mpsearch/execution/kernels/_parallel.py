"""Split one numba kernel call over torch's intra-op threads (``torch.get_num_threads()``).

The numba kernels are compiled without the GIL (:mod:`._numba_jit`), so a kernel run on two
ranges of rows (or images) from two Python threads runs on two cores; each range writes its own
rows of the output, so the result is the same integers whatever the split. torch's own ops
(``torch._int_mm``) use torch's threads themselves. Calls too small to pay for the hand-over
(about 20-40 us) run in the calling thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

#: Smallest number of output elements per part worth a hand-over to another thread.
MIN_PART_ELEMENTS = 1 << 16

_POOL: list[ThreadPoolExecutor] = []
_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _LOCK:
        if not _POOL or _POOL[0]._max_workers < workers:  # noqa: SLF001  (grow: a new pool)
            if _POOL:
                _POOL.pop().shutdown(wait=False)
            _POOL.append(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpsearch-kernel"))
        return _POOL[0]


def parts(n: int, elements_per_item: int) -> int:
    """How many parts a call over ``n`` items of ``elements_per_item`` output elements each is split into."""
    threads = torch.get_num_threads()
    if threads <= 1 or n < 2:
        return 1
    return max(1, min(threads, n, n * elements_per_item // MIN_PART_ELEMENTS))


def run_split(fn: Callable[[int, int], None], n: int, elements_per_item: int) -> None:
    """``fn(lo, hi)`` over ``[0, n)``: in :func:`parts` contiguous ranges, the first in this thread and
    the others on the kernel thread pool; returns when all are done (re-raising their errors)."""
    k = parts(n, elements_per_item)
    if k == 1:
        fn(0, n)
        return
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_pool(k - 1).submit(fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
