"""benchmarks/fvp_subsample.py keeps the settings its committed results were measured at."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compare
import fvp_subsample


@pytest.mark.parametrize("name", fvp_subsample.TASKS)
def test_the_fvp_measurements_run_at_their_observation_depth(name):
    task = fvp_subsample.load_task(name)
    assert task.env_config["agent_obsk"] == fvp_subsample.AGENT_OBSK == 0
    # Every other setting is the tuned example's.
    tuned = compare.load_tasks()[name]
    assert dataclasses.replace(task, env_config=tuned.env_config) == tuned
