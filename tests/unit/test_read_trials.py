"""Reading a Tune experiment folder back (rllib_hatrpo.experiments.tune.read_trials)."""

from __future__ import annotations

import json

import pandas as pd

from rllib_hatrpo.experiments.tune import read_trials


def _trial(folder, params, iterations, returns):
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    pd.DataFrame({"training_iteration": iterations, "team_return": returns}).to_csv(
        folder / "progress.csv", index=False
    )


def test_a_restored_trial_keeps_one_row_per_iteration_the_restored_runs(tmp_path):
    # Checkpoint at iteration 2, interrupted after 4: the restored run reports 3 and 4 again.
    _trial(
        tmp_path / "a",
        {"method": "kkt", "seed": 1},
        [1, 2, 3, 4, 3, 4, 5],
        [1, 2, 3, 4, 30, 40, 50],
    )
    _trial(tmp_path / "b", {"method": "uniform", "seed": 0}, [1, 2], [7, 8])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "params.json").write_text("{}")  # reported nothing yet: left out
    curves = read_trials(tmp_path)
    a = curves[curves["trial"] == "a"]
    assert a["training_iteration"].tolist() == [1, 2, 3, 4, 5]
    assert a["team_return"].tolist() == [1, 2, 30, 40, 50]
    assert (a["method"] == "kkt").all() and (a["seed"] == 1).all()
    assert curves[curves["trial"] == "b"]["team_return"].tolist() == [7, 8]
    assert set(curves["trial"]) == {"a", "b"}
