"""The experiments layer: no import of the command line, errors that name settings, plan records.

No Ray: every check here runs on plain files and dataclasses.
"""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from rllib_hatrpo.experiments.plans import (
    PlanMismatchError,
    check_plan,
    check_same_plan,
    plan_changes,
    record_plan,
    rename_shorter_run,
)
from rllib_hatrpo.experiments.resume import ResumeError, merge_flags
from rllib_hatrpo.experiments.spec import SettingError, ref
from rllib_hatrpo.experiments.summaries import final_return, final_value, markdown_table
from rllib_hatrpo.experiments.tuned import METHODS, check_same_task_plan

EXPERIMENTS = Path(__file__).resolve().parents[2] / "rllib_hatrpo" / "experiments"
MODULES = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if p.stem != "__init__")


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_experiments_module_never_imports_the_cli(module):
    imported = _imported_modules(EXPERIMENTS / f"{module}.py")
    assert not {name for name in imported if name.startswith("rllib_hatrpo.cli")}


def test_importing_every_experiments_module_loads_no_cli_module():
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module('rllib_hatrpo.experiments.' + name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('rllib_hatrpo.cli')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_setting_error_names_settings_as_the_reader_does_and_pickles():
    err = SettingError("grace_period", f"must be <= {ref('max_t')} (5 > 3)")
    assert str(err) == "must be <= max_t (5 > 3)"
    assert err.render(lambda s: "--" + s.replace("_", "-")) == "must be <= --max-t (5 > 3)"
    again = pickle.loads(pickle.dumps(err))
    assert (again.setting, again.message) == (err.setting, err.message)
    resumed = pickle.loads(pickle.dumps(ResumeError("no checkpoint")))
    assert resumed.setting == "resume" and str(resumed) == "no checkpoint"


def test_plan_record_is_written_once_then_compared(tmp_path):
    path = tmp_path / "out" / "plan.json"
    plan = {"seeds": [0, 1], "kl": 0.01}
    assert check_same_plan(path, plan, what="a sweep", hint="") is False
    assert json.loads(path.read_text()) == plan
    assert check_same_plan(path, {"kl": 0.01, "seeds": (0, 1)}, what="a sweep", hint="") is True
    with pytest.raises(PlanMismatchError) as error:
        check_same_plan(path, {"seeds": [0], "kl": 0.02}, what="a sweep", hint="Rerun it.")
    assert error.value.setting == "kl"
    assert [c.setting for c in error.value.changes] == ["kl", "seeds"]
    message = error.value.render(lambda s: "--" + s)
    assert "holds a sweep started with other settings" in message
    assert "(--kl: 0.01 then, 0.02 now; --seeds: [0, 1] then, [0] now). Rerun it." in message
    assert pickle.loads(pickle.dumps(error.value)).changes == error.value.changes


def test_plan_may_raise_its_growable_settings_and_records_them_when_told(tmp_path):
    path = tmp_path / "sweep.json"
    plan = {"seeds": [0], "stop_iters": 1, "stop_timesteps": None}
    stops = ("stop_iters", "stop_timesteps")
    assert check_plan(path, plan, what="a sweep", hint="", growable=stops) == (False, [])
    recorded, raised = check_plan(
        path, {**plan, "stop_iters": 2}, what="a sweep", hint="", growable=stops
    )
    assert recorded and [(c.setting, c.recorded, c.given) for c in raised] == [("stop_iters", 1, 2)]
    assert json.loads(path.read_text())["stop_iters"] == 1  # the caller records it
    record_plan(path, {**plan, "stop_iters": 2})
    assert json.loads(path.read_text())["stop_iters"] == 2
    for other in ({"stop_iters": 1}, {"stop_timesteps": 400}, {"stop_iters": 3, "seeds": [1]}):
        with pytest.raises(PlanMismatchError):
            check_plan(
                path, {**plan, "stop_iters": 2, **other}, what="a sweep", hint="", growable=stops
            )
    with pytest.raises(PlanMismatchError):  # not growable unless named
        check_plan(path, {**plan, "stop_iters": 3}, what="a sweep", hint="")


def test_the_longest_shorter_run_of_a_plan_is_renamed_to_the_new_budget(tmp_path):
    plan = {"seeds": [0], "stop_timesteps": 800}
    for steps, seeds in ((200, [0]), (400, [0]), (600, [1]), (1000, [0])):
        record_plan(
            tmp_path / f"task_{steps}" / "plan.json", {"seeds": seeds, "stop_timesteps": steps}
        )
    grow = {"growable": ("stop_timesteps",)}
    assert rename_shorter_run(tmp_path, "task_800", "task_", plan, "plan.json", **grow)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "task_1000",
        "task_200",
        "task_600",
        "task_800",
    ]  # 400 became 800; 600 has other seeds, 1000 is longer
    assert json.loads((tmp_path / "task_800" / "plan.json").read_text())["stop_timesteps"] == 400
    assert not rename_shorter_run(tmp_path, "task_800", "task_", plan, "plan.json", **grow)


def test_plan_sections_keep_one_plan_per_task(tmp_path):
    path = tmp_path / "campaign.json"
    check_same_plan(path, {"seeds": [0]}, section="a", what="task a", hint="")
    check_same_plan(path, {"seeds": [1]}, section="b", what="task b", hint="")
    assert json.loads(path.read_text()) == {"a": {"seeds": [0]}, "b": {"seeds": [1]}}
    with pytest.raises(PlanMismatchError, match="task b"):
        check_same_plan(path, {"seeds": [0]}, section="b", what="task b", hint="")


def test_tuned_example_refuses_other_seeds_in_its_experiment_folder(tmp_path):
    plan = {"method": "uniform", "seeds": [0], "stop_timesteps": 800, "num_env_runners": 0}
    assert not check_same_task_plan(str(tmp_path), "spread_uniform_800", plan)
    assert check_same_task_plan(str(tmp_path), "spread_uniform_800", plan)
    with pytest.raises(PlanMismatchError, match="storage_path") as error:
        check_same_task_plan(str(tmp_path), "spread_uniform_800", {**plan, "seeds": [0, 1]})
    assert error.value.setting == "seeds"
    assert "ppo" in METHODS and METHODS[: len(METHODS) - 1] == ("uniform", "kkt", "greedy")


def test_resume_names_every_flag_that_may_not_change(tmp_path):
    defaults = {"allocator": "uniform", "seeds": [0], "stop_iters": None, "output": None}
    saved = {**defaults, "allocator": "kkt", "stop_iters": 3, "command": "train"}
    given = {"allocator": "greedy", "seeds": [0, 1], "stop_iters": 9}
    with pytest.raises(PlanMismatchError) as error:
        merge_flags(saved, given, defaults, tmp_path)
    assert error.value.setting == "allocator"
    assert [c.setting for c in error.value.changes] == ["allocator", "seeds"]
    assert "resumed" in str(error.value)
    merged = merge_flags(saved, {"stop_iters": 9}, defaults, tmp_path)
    assert "command" not in merged  # saved entries that are not flags are dropped
    assert (merged["allocator"], merged["stop_iters"], merged["stop_timesteps"]) == ("kkt", 9, None)
    assert merged["output"] == merged["resume"] == tmp_path
    with pytest.raises(SettingError) as wrong:
        merge_flags(saved, {"output": tmp_path / "elsewhere"}, defaults, tmp_path)
    assert wrong.value.setting == "output"


def test_final_return_is_one_definition_for_rows_and_frames():
    import pandas as pd

    values = [float("nan")] + [0.0] * 17 + [4.0, 6.0]
    rows = [{"env_steps": 10 * i, "team_return": v} for i, v in enumerate(values)]
    assert final_value(values) == 5.0  # 19 finite values: the last ceil(1.9) = 2
    assert final_return(rows) == final_return(pd.DataFrame(rows)) == 5.0
    assert final_return(pd.DataFrame({"env_steps": [1]})) != final_return(rows)  # NaN


def test_plan_changes_compares_json_values():
    assert plan_changes({"a": (1, 2), "p": Path("x")}, {"a": [1, 2], "p": "x"}) == []
    assert [c.setting for c in plan_changes({"a": 1}, {"a": 1, "b": 2})] == ["b"]


def test_markdown_table():
    table = markdown_table(("a", "b"), [(1, "x"), ("—", 2.5)])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| — | 2.5 |"]
