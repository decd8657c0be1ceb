"""Thread counts that fit a process's CPU allotment (torch, OpenMP, OpenBLAS, MKL).

torch and the BLAS libraries start one thread per core of the machine by default. Several
EnvRunners and a learner on one machine then oversubscribe the cores: on a loaded machine,
sampling with default threading was measured up to 20× slower. HATRPO's processes therefore
limit their threads to their allotment:

- a remote EnvRunner: ``num_cpus_per_env_runner`` (1 by default);
- a remote learner: ``num_cpus_per_learner`` (1 for "auto" on CPU);
- the driver (the local learner, and the local EnvRunner with ``num_env_runners=0``):
  ``num_cpus_for_main_process`` (1 by default).

:func:`limit_threads` applies one such count to the calling process.
"""

from __future__ import annotations

import os

import torch

_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(num_threads: int | None) -> None:
    """Limits torch's intra-op threads and the BLAS/OpenMP pools to ``num_threads``.

    Also sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` for the
    processes this one starts. None leaves everything as it is.
    """
    if num_threads is None:
        return
    num_threads = max(1, int(num_threads))
    torch.set_num_threads(num_threads)
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(num_threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(num_threads)


def cpus_of(value: int | float | str | None, default: int = 1) -> int:
    """A CPU allotment setting as a thread count: ``"auto"`` or None -> ``default``."""
    if value in (None, "auto"):
        return default
    return max(1, int(value))
