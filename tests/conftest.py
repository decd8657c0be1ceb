"""Fixtures shared by all test layers."""

from __future__ import annotations

import pytest

#: Logical CPUs of the shared Ray instance: enough for the largest request of a component
#: test (two learner groups of 2 + 2 actors in test_multi_learner.py); Ray does not pin them.
RAY_NUM_CPUS = 6


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (``ray.init`` costs seconds)."""
    import ray

    ray.init(num_cpus=RAY_NUM_CPUS, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
