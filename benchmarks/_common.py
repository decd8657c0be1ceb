"""Helpers shared by the benchmark scripts: the learner → EnvRunner weight push, timing and
interleaving, reading logged metrics, quiet logs, allocator colours, and the package's
markdown table writer (``rllib_hatrpo.experiments.summaries.markdown_table``, re-exported).

The scripts import this module as ``_common``: ``python benchmarks/<script>.py`` puts
``benchmarks/`` first on ``sys.path`` (and spawned worker processes inherit that path). Ray is
imported inside the functions only, so that a script's ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.experiments.summaries import markdown_table

__all__ = [
    "actor_ids",
    "allocator_color",
    "assert_weights_synced",
    "markdown_table",
    "peek",
    "push_actor_weights",
    "quiet_logs",
    "rotate",
    "timed",
]


def actor_ids(learner: Any) -> list[str]:
    """The learner's module IDs without HATRPO's central critic, in the learner's order."""
    return [mid for mid in learner.module.keys() if mid != SHARED_CRITIC_ID]


def push_actor_weights(learner: Any, runner: Any) -> None:
    """Pushes the learner's actor weights to an in-process EnvRunner.

    This is what ``EnvRunnerGroup.sync_weights`` does after each RLlib iteration: the actors'
    inference-only state (weights and buffers, e.g. the input normalisation's statistics) goes
    into the runner with ``runner.set_state({COMPONENT_RL_MODULE: ...})``.

    Args:
        learner: A built learner (HATRPO's or PPO's).
        runner: A ``MultiAgentEnvRunner`` holding the same modules.
    """
    from ray.rllib.core import COMPONENT_RL_MODULE

    components = [f"{COMPONENT_RL_MODULE}/{mid}" for mid in actor_ids(learner)]
    state = learner.get_state(components=components, inference_only=True)
    runner.set_state({COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE]})


def assert_weights_synced(runner: Any, learner: Any) -> None:
    """Asserts that the runner's actors hold exactly the learner's (inference-only) weights."""
    for aid in actor_ids(learner):
        ours = learner.module[aid].get_state(inference_only=True)
        theirs = runner.module[aid].get_state()
        assert sorted(ours) == sorted(theirs), (aid, sorted(ours), sorted(theirs))
        for key, value in ours.items():
            assert np.array_equal(np.asarray(value), np.asarray(theirs[key])), (aid, key)


def peek(value: Any) -> float:
    """A logged metric as a float: ``Stats.peek()`` if it is one, NaN for None."""
    if value is None:
        return float("nan")
    return float(value.peek() if hasattr(value, "peek") else value)


def rotate(items: Sequence[Any], k: int) -> list[Any]:
    """``items`` started at position k (mod len): round k of a round-robin interleaving."""
    items = list(items)
    k %= len(items)
    return items[k:] + items[:k]


def timed(fn: Callable, sink: list[float]) -> Callable:
    """``fn``, appending the wall time (``time.perf_counter``) of every call to ``sink``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    return wrapper


def quiet_logs(names: Iterable[str]) -> None:
    """Ignores Python warnings and sets the named loggers to ERROR."""
    warnings.filterwarnings("ignore")
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)


def allocator_color(allocator: str) -> str:
    """One matplotlib colour per built-in allocator (``C0``, ``C1``, ... in the order of
    ``ALLOCATOR_NAMES``: uniform blue, kkt orange, greedy green); white for any other name."""
    if allocator not in ALLOCATOR_NAMES:
        return "white"
    return f"C{ALLOCATOR_NAMES.index(allocator)}"
