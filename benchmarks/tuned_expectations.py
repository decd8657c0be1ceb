"""The tuned examples' expected returns, measured from the comparison campaigns' raw results.

How to run
----------
From the repository root::

    python benchmarks/tuned_expectations.py           # writes docs/data/tuned_expectations.md
    python benchmarks/tuned_expectations.py --check   # exit 1 if a tuned example disagrees

Every run of ``benchmarks/compare.py`` trains a tuned example's ``TASK`` with its settings
and seed, only for more env steps. The rows of such a run up to the tuned example's own budget
(``TASK.env_steps``) are therefore the run that ``python tuned_examples/<env>/<task>.py
--allocator <method> --seeds <seed>`` makes (a campaign run that was restored from a
checkpoint before that budget is not bit-identical to it, but it trained the same settings).
Per task and method this script takes, from ``<data>/<task>/<method>_seed<s>.csv`` for each
``--data`` folder (default: the MaMuJoCo campaign's ``docs/data/compare`` and the MPE
campaign's ``docs/data/compare_mpe``; a task may appear in one folder only):

- each seed's final team return at the tuned budget (the mean of the last 10 % of the
  iterations up to and including the first one that reaches ``TASK.env_steps``);
- the threshold :func:`rllib_hatrpo.experiments.summaries.expected_threshold` makes of them and of
  a uniformly random policy's team return (measured here: whole seeded episodes, at least
  ``--random-steps`` env steps), so that every measured seed meets it with a margin;
- the same seeds' final return at the campaign's budget, for reference.

The table goes to ``docs/data/tuned_expectations.md``. ``--check`` compares each tuned
example's ``expected`` with the thresholds (for the methods with at least ``--min-seeds``
seeds) and exits 1 on a difference; the tuned examples' numbers are copied from the table by
hand, with the budget and seeds in their ``expected_note``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _compare_report import collect_curves
from compare import ROOT, load_tasks

from rllib_hatrpo.experiments.records import ENV_STEPS
from rllib_hatrpo.experiments.summaries import expected_threshold, final_return, markdown_table
from rllib_hatrpo.experiments.tune import METHOD, SEED
from rllib_hatrpo.experiments.tuned import METHODS

DATA = ROOT / "docs" / "data"


def prefix(run: pd.DataFrame, env_steps: int) -> pd.DataFrame:
    """A run's iterations up to and including the first one that reaches ``env_steps``.

    Those are the iterations a run stopped at ``env_steps`` trains (Tune's stop criterion).
    """
    run = run.sort_values(ENV_STEPS)
    reached = np.flatnonzero(run[ENV_STEPS].to_numpy() >= env_steps)
    if not len(reached):
        raise ValueError(f"the run stops at {run[ENV_STEPS].max():,} < {env_steps:,} env steps")
    return run.iloc[: reached[0] + 1]


def random_policy_return(task: Any, env_steps: int, min_episodes: int = 20, seed: int = 0) -> float:
    """Mean team return of uniformly random actions on ``task``'s env.

    Whole episodes (seeded ``seed``, ``seed + 1``, ...) until at least ``env_steps`` env steps
    and ``min_episodes`` episodes: 20 HalfCheetah episodes, hundreds of the short ones of a
    falling Walker2d. Every agent of the package's envs gets the team reward, so the team
    return is one agent's return (:class:`rllib_hatrpo.callbacks.TeamReturnCallback`).
    """
    env = task.env_class()(dict(task.env_config))
    spaces = {agent: env.get_action_space(agent) for agent in env.possible_agents}
    for offset, space in enumerate(spaces.values()):
        space.seed(seed + offset)
    returns, steps = [], 0
    while steps < env_steps or len(returns) < min_episodes:
        env.reset(seed=seed + len(returns))
        team_return, done = 0.0, False
        while not done:
            _, rewards, terminateds, truncateds, _ = env.step(
                {agent: space.sample() for agent, space in spaces.items()}
            )
            team_return += float(next(iter(rewards.values()), 0.0))
            steps += 1
            done = terminateds.get("__all__", False) or truncateds.get("__all__", False)
        returns.append(team_return)
    env.close()
    return float(np.mean(returns))


def measure(task: Any, runs: pd.DataFrame, random_return: float) -> list[dict[str, Any]]:
    """One row per method of ``task`` with finished campaign runs."""
    rows = []
    for method in METHODS:
        mine = runs[runs[METHOD] == method]
        if mine.empty:
            continue
        seeds = sorted(mine[SEED].unique())
        at_budget = [final_return(prefix(mine[mine[SEED] == s], task.env_steps)) for s in seeds]
        at_end = [final_return(mine[mine[SEED] == s]) for s in seeds]
        rows.append(
            {
                "task": task.name,
                "method": method,
                "seeds": seeds,
                "env_steps": task.env_steps,
                "finals": at_budget,
                "threshold": expected_threshold(at_budget, random_return),
                "random": random_return,
                "campaign_env_steps": int(mine[ENV_STEPS].max()),
                "campaign_finals": at_end,
            }
        )
    return rows


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):,.1f} ± {np.std(values):,.1f}"


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        row["task"],
        row["method"],
        " ".join(map(str, row["seeds"])),
        f"{row['env_steps']:,}",
        _spread(row["finals"]),
        f"{min(row['finals']):,.1f}",
        f"{row['random']:,.1f}",
        f"{row['threshold']:,.1f}",
        f"{_spread(row['campaign_finals'])} at {row['campaign_env_steps']:,}",
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of :func:`measure`'s rows."""
    header = (
        "task", "method", "seeds", "env steps", "final team return (mean ± std)",
        "lowest seed", "random policy", "threshold", "at the campaign's budget",
    )  # fmt: skip
    return markdown_table(header, map(_cells, rows))


def disagreements(tasks: dict[str, Any], rows: list[dict[str, Any]], min_seeds: int) -> list:
    """(task, method, expected, measured threshold) where a tuned example differs."""
    out = []
    for r in rows:
        if len(r["seeds"]) < min_seeds:
            continue
        expected = tasks[r["task"]].expected.get(r["method"], math.nan)
        if not math.isclose(expected, r["threshold"], abs_tol=0.05):
            out.append((r["task"], r["method"], expected, r["threshold"]))
    return out


def task_folders(folders: list[Path], tasks: dict[str, Any]) -> dict[str, Path]:
    """Each tuned task with raw results → the one folder of ``folders`` that holds them.

    A missing folder or a task in two folders is an error: the table must say which campaign
    every number comes from.
    """
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"--data {folder}: no such folder (run benchmarks/compare.py first)")
        for path in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in tasks):
            if path.name in found:
                raise SystemExit(
                    f"--data: task {path.name!r} is in both {found[path.name]} and {folder}; "
                    "pass one of them"
                )
            found[path.name] = folder
    return dict(sorted(found.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[DATA / "compare", DATA / "compare_mpe"],
        help="campaigns' raw-results folders",
    )
    parser.add_argument(
        "--random-steps", type=int, default=20_000, help="env steps of the random policy"
    )
    parser.add_argument("--min-seeds", type=int, default=5, help="seeds --check requires")
    parser.add_argument("--check", action="store_true", help="exit 1 on a disagreement")
    args = parser.parse_args(argv)

    tasks = load_tasks()
    rows = []
    for name, folder in task_folders(args.data, tasks).items():
        curves = collect_curves(folder, [name])
        if curves.empty:  # the task's folder exists before its first run has finished
            continue
        random_return = random_policy_return(tasks[name], args.random_steps)
        rows += measure(tasks[name], curves, random_return)
    text = (
        "Tuned examples' expected returns, from the campaigns' runs up to each tuned "
        "example's budget (written by `python benchmarks/tuned_expectations.py`). Threshold = "
        "min over seeds of R − 25 % × |R − R_random|, rounded down to 0.1.\n\n" + table(rows)
    )
    (DATA / "tuned_expectations.md").write_text(text + "\n")
    print(text)
    if not args.check:
        return 0
    wrong = disagreements(tasks, rows, args.min_seeds)
    for task, method, expected, threshold in wrong:
        print(f"{task}: expected[{method!r}] = {expected} but the campaign gives {threshold}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
