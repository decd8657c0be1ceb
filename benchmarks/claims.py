"""The joint-budget paper's claims, one row each, from the committed raw results.

How to run (from the repository root; seconds, no training)::

    python benchmarks/claims.py

Reads ``docs/data/compare/`` (``benchmarks/compare.py``'s raw results: MaMuJoCo, every
finished run; the finished runs of the controls in :data:`CONTROLS` join its per-task table),
``docs/data/differential_game/summary.csv`` (``benchmarks/differential_game.py``) and
``docs/data/matrix_games/summary.csv`` (``benchmarks/toy_games.py``). Writes
``docs/data/claims.md`` and puts the same text between the ``claims`` markers of
``docs/results.md``. Rerun it whenever raw results are added: every number it prints comes
from those files.

The measures, per claim (HATRPO = uniform, W = kkt, G = greedy):

- final-return gains, the variance of G against W, each on each task alone too, and the
  steps to 99 % of the best: from the MaMuJoCo campaigns' finished runs, as
  ``_claims_measures.py`` defines them (95 % percentile bootstrap intervals over seeds,
  on the seeds both methods have finished);
- time per iteration: from ``benchmarks/throughput.py``'s whole iterations measured side by
  side, interleaved (``docs/data/throughput/throughput.csv``, its ``pipeline`` rows): per task
  the method's median seconds over uniform's, mean over tasks. Not from the campaign's runs:
  they trained over many hours, at different loads and on more than one machine (one about
  3× slower than another), so their iteration times do not compare across runs;
- compute: per command and task, the finished runs' hours of training and each method's
  minutes per run (each run's own training clock), and the sum over them.
"""

from __future__ import annotations

import json
import posixpath
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from _claims_measures import (
    HATRPO,
    PER_TASK_HEADER,
    G,
    W,
    finals,
    mamujoco_rows,
    per_task_rows,
)
from _compare_report import CAMPAIGN_FILE, METHODS, collect_curves, markdown, summarize

from rllib_hatrpo.experiments.records import TIME_TOTAL_S
from rllib_hatrpo.experiments.summaries import markdown_table
from rllib_hatrpo.experiments.tune import METHOD, SEED

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
RESULTS_PAGE = ROOT / "docs" / "results.md"
BEGIN = "<!-- claims: begin (written by benchmarks/claims.py) -->"
END = "<!-- claims: end -->"
#: The toy games' commands (their settings: the "Paper toy games" section of the page).
DIFFERENTIAL_GAME = (
    "`python benchmarks/differential_game.py run --kl-threshold K --initial-std S "
    "--batch-size B` for each setting klK_stdS_bB_it60"
)
MATRIX_GAMES = (
    "python benchmarks/toy_games.py --games climbing penalty penalty_mild --allocators "
    "uniform kkt greedy waterfill --iterations 30 --batch-size 200 --out docs/data/matrix_games"
)
#: The side-by-side timings of whole iterations behind the time-per-iteration claims.
THROUGHPUT = (
    "python benchmarks/throughput.py --tasks 2x3 6x1 --methods uniform kkt greedy "
    "uniform_rllib_runner ppo --iters 3 --batch 4000 --num-envs 16 --runners 1 2 "
    "--sampler-tasks --fvp-subsample 5 --pipeline-runners 1"
)
SPEED_BUDGET = "4,000 env steps per iteration, median of 3 iterations per method, interleaved"
#: Raw-results folder of the longer runs (HalfCheetah 2x3 at 10M env steps): command D.
LONG = "compare_10m"
#: Raw-results folders of controls run as campaigns of their own (``compare.py --data``):
#: their finished runs join the per-task table.
CONTROLS = ("compare_ppo_bootstrap", "compare_ppo_noclip")
#: Column names of the compute table (:func:`compute_rows`).
COMPUTE_HEADER = ("command", "task", "runs", "hours", "minutes per run: median (min–max, runs)")


def speed_rows(path: Path | None = None) -> list[tuple]:
    """W's and G's seconds per iteration over HATRPO's, timed side by side (command E).

    Args:
        path: ``throughput.py``'s raw rows (default ``docs/data/throughput/throughput.csv``).
    """
    rows = pd.read_csv(path or DATA / "throughput" / "throughput.csv")
    seconds = rows[rows["phase"] == "pipeline"].groupby(["task", METHOD])["iter_s"].median()
    tasks = seconds.index.get_level_values("task").unique()
    out = []
    for method, name in ((W, "W"), (G, "G")):
        ratios = [seconds[task, method] / seconds[task, HATRPO] for task in tasks]
        each = ", ".join(f"{task} {ratio:.2f}×" for task, ratio in zip(tasks, ratios, strict=True))
        ours = f"{np.mean(ratios):.2f}× HATRPO's seconds (HalfCheetah {each})"
        out.append((f"{name}'s time per iteration", "similar", ours, SPEED_BUDGET, "E"))
    return out


def toy_rows() -> list[tuple]:
    """The differential-game (command B) and matrix-game (command C) claims."""
    game = pd.read_csv(DATA / "differential_game" / "summary.csv")
    settings = [
        f"{setting}: "
        + ", ".join(f"{r.allocator} {r.successes}/{r.seeds}" for r in runs.itertuples())
        for setting, runs in game.groupby("setting", sort=False)
    ]
    matrix = pd.read_csv(DATA / "matrix_games" / "summary.csv")
    games = [
        f"{name}: "
        + ", ".join(
            f"{r.allocator} {r.final_det_return_mean:.2f} ({r.successes}/{r.seeds})"
            for r in runs.itertuples()
        )
        for name, runs in matrix.groupby("game", sort=False)
    ]
    return [
        (
            "Differential game: HATRPO stays at the local peak, W and G reach the global one",
            "HATRPO local; W, G global",
            "runs that end in the global basin — " + "; ".join(settings),
            "60 iterations × 30 or 200 one-step episodes, seeds 0–9",
            "B",
        ),
        (
            "Matrix games: W and G beat HATRPO",
            "W, G better",
            "payoff of the final greedy joint action, mean over seeds (optimal in n of 10 "
            "seeds) — " + "; ".join(games),
            "30 iterations × 200 one-step episodes, seeds 0–9",
            "C",
        ),
    ]


def compute_rows(campaigns: Sequence[tuple[str, pd.DataFrame]]) -> list[tuple]:
    """Per command and task: finished runs, their hours in all, each method's minutes per run.

    A run's time is its last row's ``time_total_s``: the seconds Tune counted while it trained,
    across restores (time lost after the last checkpoint of a stopped run is not in it; a
    pause of the whole machine is). Rows come in the order of ``campaigns``, then by task.

    Args:
        campaigns: (command label, that command's finished runs as ``collect_curves`` reads
            them); an empty frame gives no row.
    """
    rows = []
    for command, curves in campaigns:
        if curves.empty:
            continue
        minutes = curves.groupby(["task", METHOD, SEED])[TIME_TOTAL_S].max() / 60.0
        for task, runs in minutes.groupby(level="task"):
            per_method = dict(list(runs.groupby(level=METHOD)))
            order = sorted(per_method, key=lambda m: (METHODS.index(m) if m in METHODS else 99, m))
            cells = [
                f"{m} {per_method[m].median():.0f} ({per_method[m].min():.0f}–"
                f"{per_method[m].max():.0f}, {len(per_method[m])})"
                for m in order
            ]
            rows.append((command, task, len(runs), round(runs.sum() / 60.0, 1), "; ".join(cells)))
    return rows


def campaign_command(campaign: dict) -> tuple[str, str]:
    """The compare.py command of the campaign and its budget, as text."""
    plans = list(campaign.values())
    if not plans or any(plan != plans[0] for plan in plans):
        return (
            "python benchmarks/compare.py  # plans per task: docs/data/compare/campaign.json",
            "per task",
        )
    plan = plans[0]
    command = (
        f"python benchmarks/compare.py --tasks {' '.join(campaign)} --methods "
        f"{' '.join(plan['methods'])} --seeds {' '.join(map(str, plan['seeds']))} "
        f"--env-steps {plan['env_steps']}"
    )
    return command, f"{plan['env_steps']:,} env steps per run"


def read_campaign(data: Path) -> dict:
    """The plan (task -> methods, seeds, env_steps) recorded in a raw-results folder."""
    path = data / CAMPAIGN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def control_curves(campaign: dict) -> list[pd.DataFrame]:
    """The finished runs of each :data:`CONTROLS` folder, for the tasks of ``campaign``.

    Raises:
        SystemExit: A control trained a task to another budget than the campaign.
    """
    frames = []
    for name in CONTROLS:
        control = read_campaign(DATA / name)
        for task, plan in control.items():
            budget = campaign.get(task, {}).get("env_steps")
            if budget is not None and plan["env_steps"] != budget:
                raise SystemExit(
                    f"docs/data/{name}: {task} trained to {plan['env_steps']:,} env steps, the "
                    f"campaign to {budget:,}; rerun it with --env-steps {budget}"
                )
        frames.append(collect_curves(DATA / name, [t for t in control if t in campaign]))
    return frames


def control_commands() -> list[str]:
    """The compare.py command of each control that has a recorded plan."""
    lines = []
    for name in CONTROLS:
        control = read_campaign(DATA / name)
        if control:
            command, _ = campaign_command(control)
            lines.append(f"{command} --out results/{name} --data docs/data/{name}")
    return lines


def claims_text(figures: str) -> str:
    """The claims table, its commands, then the per-task MaMuJoCo table and its figures, as
    markdown; ``figures`` is the path of ``docs/data/compare/`` from the page it goes into."""
    campaign = read_campaign(DATA / "compare")
    main_curves = collect_curves(DATA / "compare", list(campaign))
    controls = control_curves(campaign)
    curves = pd.concat([main_curves, *controls], ignore_index=True)
    command, budget = campaign_command(campaign)
    rows = mamujoco_rows(curves, budget)
    commands = [f"- A: `{command}`", *(f"- A, control: `{c}`" for c in control_commands())]
    commands += [f"- B: {DIFFERENTIAL_GAME}", f"- C: `{MATRIX_GAMES}`", f"- E: `{THROUGHPUT}`"]
    long = read_campaign(DATA / LONG)
    long_curves = collect_curves(DATA / LONG, list(long))
    if long:  # the longer runs, once their campaign has started
        long_command, long_budget = campaign_command(long)
        methods = {m for plan in long.values() for m in plan["methods"]}
        rows += mamujoco_rows(long_curves, long_budget, "D", methods)
        commands.append(f"- D: `{long_command} --out results/{LONG} --data docs/data/{LONG}`")
    header = ("claim of the paper", "paper", "measured here", "budget", "command")
    text = [
        markdown_table(header, rows + speed_rows() + toy_rows()),
        "Commands (from the repository root; each resumes where it stopped, and "
        "`python benchmarks/claims.py` redraws this table from the raw results):\n\n"
        + "\n".join(commands),
    ]
    if not curves.empty:
        budgets = {task: plan["env_steps"] for task, plan in campaign.items()}
        text += [
            "Per task (MaMuJoCo, finished runs only). *Steps to 99 %* here: the first env-step "
            "count at which the method's seed-mean curve reaches 99 % of the best method's "
            "final mean on the task (— if never), a common target; the claims above measure "
            "each method against its own curve's maximum instead.",
            markdown(summarize(curves, budgets)),
        ]
        text += [
            "The claims on each task alone (the same measures, each with its 95 % bootstrap "
            "interval over that task's seeds, and the two methods' seed counts):",
            markdown_table(PER_TASK_HEADER, per_task_rows(finals(curves))),
        ]
        text += [task_figures(task, figures) for task in curves["task"].unique()]
    if not long_curves.empty:
        budgets = {task: plan["env_steps"] for task, plan in long.items()}
        folder = posixpath.normpath(f"{figures}/../{LONG}")
        text += [f"Per task at {long_budget} (command D, finished runs only):"]
        text += [markdown(summarize(long_curves, budgets))]
        text += [
            f"![{task}, command D]({folder}/curves_{task}.png)"
            for task in long_curves["task"].unique()
        ]
    compute = [("A", main_curves), *(("A, control", c) for c in controls), ("D", long_curves)]
    if compute_table := compute_rows(compute):
        runs = sum(row[2] for row in compute_table)
        hours = sum(row[3] for row in compute_table)
        text += [
            "Compute of the finished runs (each run's own training clock; two or three runs "
            "at a time on 2-core machines of different speed, so a run's minutes depend on "
            "what ran beside it):",
            markdown_table(COMPUTE_HEADER, compute_table),
            f"In all {runs} runs, {hours:,.1f} hours of training.",
        ]
    return "\n\n".join(text)


def task_figures(task: str, figures: str) -> str:
    """The task's learning curves (seed bands) inline, its KL and allocation plots as links."""
    links = [f"[Σ KL per iteration]({figures}/kl_total_{task}.png)"]
    for name in CONTROLS:
        if (DATA / name / f"curves_{task}.png").is_file():
            folder = posixpath.normpath(f"{figures}/../{name}")
            links.append(f"[curves, {name}]({folder}/curves_{task}.png)")
    for path in sorted((DATA / "compare").glob(f"allocation_{task}_*.png")):
        method = path.stem.removeprefix(f"allocation_{task}_")
        links.append(f"[allocation, {method}]({figures}/{path.name})")
    return f"![{task}]({figures}/curves_{task}.png)\n\n{task}: " + ", ".join(links)


def write_block(page: Path, text: str) -> None:
    """Replaces the text between the markers of ``page`` (which must have both)."""
    content = page.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{page}: add the lines {BEGIN!r} and {END!r} where the claims go")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    """Writes ``docs/data/claims.md`` and the claims block of ``docs/results.md``."""
    (DATA / "claims.md").write_text(claims_text("compare") + "\n")
    text = claims_text("data/compare")
    write_block(RESULTS_PAGE, text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
