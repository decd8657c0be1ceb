"""benchmarks/compare.py queues a task's runs seed by seed: Tune must start them in that order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compare

pytestmark = pytest.mark.component


def test_runs_start_in_the_order_they_are_queued(ray_session, tmp_path):
    from ray import tune

    plan = {"methods": ["uniform", "kkt"], "seeds": [0, 1]}
    runs = compare.runs_to_train(plan, {("kkt", 0)})
    log = str(tmp_path / "order.log")

    def record_start(config):  # defined here: Ray pickles it by value for its workers
        with open(log, "a") as file:
            file.write(f"{config['method']}{config['seed']}\n")
        tune.report({"env_steps": 1})

    tuner = tune.Tuner(
        tune.with_resources(record_start, {"cpu": 1}),
        param_space={"method": tune.choice(plan["methods"]), "seed": tune.choice(plan["seeds"])},
        tune_config=tune.TuneConfig(
            num_samples=len(runs),
            search_alg=compare.run_queue(runs, max_concurrent_trials=1),
        ),
        run_config=tune.RunConfig(name="order", storage_path=str(tmp_path), verbose=0),
    )
    tuner.fit()
    started = Path(log).read_text().split()
    assert started == [f"{run['method']}{run['seed']}" for run in runs]
