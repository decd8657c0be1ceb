"""Comparison of HATRPO (uniform), HATRPO-W (kkt), HATRPO-G (greedy) and RLlib's PPO.

How to run
----------
From the repository root::

    python benchmarks/compare.py --tasks halfcheetah_2x3 simple_spread --seeds 0 1 2
    python benchmarks/compare.py --tasks simple_spread --env-steps 50000 --seeds 0 1
    python benchmarks/compare.py --report-only                 # tables and plots only
    python benchmarks/compare.py --tasks simple_spread --methods kkt kkt_carry greedy \
        --out results/compare_spend --data results/compare_spend/data   # equal spend
    python benchmarks/compare.py --tasks halfcheetah_2x3 walker2d_2x3 ant_4x2 \
        halfcheetah_6x1 --methods uniform kkt kkt_carry greedy ppo --seeds 0 1 2 3 4 \
        --env-steps 2000000                                    # docs/results.md's campaign
    python benchmarks/compare.py --tasks halfcheetah_2x3 --methods ppo_bootstrap \
        --seeds 0 1 2 3 4 --env-steps 2000000 --out results/compare_ppo_bootstrap \
        --data docs/data/compare_ppo_bootstrap                 # its PPO controls
    python benchmarks/compare.py --tasks halfcheetah_2x3 walker2d_2x3 ant_4x2 \
        halfcheetah_6x1 --methods ppo_bootstrap_noclip --seeds 0 1 2 3 4 \
        --env-steps 2000000 --out results/compare_ppo_noclip --data docs/data/compare_ppo_noclip

Each task is a tuned example (``tuned_examples/*/<task>.py``, its ``TASK``): every method
trains that task's env, env config, sampler settings (``num_envs_per_env_runner`` envs in the
trial's own process, ``rollout_fragment_length="auto"``), batch size, γ, λ, network sizes and
seeds, to the same env-step budget (the task's ``env_steps`` unless ``--env-steps``). PPO is
RLlib's built-in PPO with one module per agent (``TunedTask.ppo_config``). One Ray Tune
experiment per task holds every (method, seed) trial, ``--max-concurrent-trials`` at once.

Equal budget is not equal spend: every HATRPO method gets the same δ_total, but greedy hands
the budget an agent did not use to the agents after it, so it spends more KL per iteration
than uniform or kkt. ``kkt_carry`` (kkt with ``carry_over=True``, not in the default
``--methods``) hands unused budget on as well; comparing greedy with it tells a gain of
greedy's choices apart from a gain of its bigger steps. The table reports each method's spend.

RLlib's PPO and time limits: RLlib's ``MultiAgentEpisode`` marks an episode that every agent
ends by truncation as terminated as well, so PPO on RLlib's ``MultiAgentEnvRunner`` (``ppo``,
PPO as RLlib users run it) treats each time-limit cut as a terminal state and gets no V(s_T)
bootstrap there; HATRPO's learner reads the env's own flag. ``ppo_bootstrap`` (not in the
default ``--methods``) is the same PPO sampled by ``TeamEnvRunner``, which keeps the env's
flags, so its GAE bootstraps at the cuts; the rest of its train batch is the same.
``ppo_bootstrap_noclip`` also sets ``vf_clip_param=inf``: RLlib's PPO clamps each row's
squared value error at ``vf_clip_param`` (default 10), and MaMuJoCo's returns are in the
hundreds.

Resuming: trials checkpoint every ``--checkpoint-every`` iterations; rerunning the same command
restores the task's Tune experiment and continues unfinished or errored trials from their last
checkpoints (finished ones are kept). A run whose raw rows in ``--data`` reach the budget is
not trained again: a checkout with the committed raw results but without Tune's folders
starts a new experiment of the remaining runs only, seed by seed. ``campaign.json`` records
each task's methods, seeds and budget, and a rerun with different ones stops with an error
rather than mixing campaigns.

Outputs: Tune's folders in ``--out`` (default ``results/compare/``): ``tune/<task>/``, and
``campaign.json``. Raw results in ``--data`` (default ``docs/data/compare/``, the copies to
commit): each trial that reached its budget as ``<task>/<method>_seed<seed>.csv`` (its
``metrics.csv`` rows: env_steps, team_return, kl_total, total_kl_budget, per-agent budgets and
KL, ...), copied at the end of each task's experiment and by every ``--report-only`` run
(also while a campaign trains in another process), and the plan as ``campaign.json``. From
those files alone: ``curves_<task>.png`` (team return against env steps, mean ± std over
seeds per method), ``kl_total_<task>.png`` (Σ achieved KL per iteration against env steps
per HATRPO method, with δ_total dashed), ``summary.csv`` and ``summary.md`` (the table,
printed last).

Table columns, per task and method (n seeds):

- final team return: each run's mean over its last 10 % of iterations
  (``rllib_hatrpo.experiments.summaries.final_return``); mean ± std over seeds (population
  std);
- steps to 99 %: the first env-step count at which the method's seed-mean curve reaches
  99 % of the best method's final mean (R* − 0.01·|R*|); "—" if never;
- gain vs uniform: (R_method − R_uniform) / |R_uniform| of the seed means, as the joint-budget
  paper computes it, on the seeds both have finished; its mean over tasks is the last table;
- seed variance: the variance over seeds of the final return;
- Σ KL / iteration: ``kl_total`` (Σ_i achieved KL_i) averaged over each run's iterations,
  mean ± std over seeds, and as a percentage of δ_total (``total_kl_budget``); "—" for PPO.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from _compare_report import (
    CAMPAIGN_FILE,
    DEFAULT_METHODS,
    METHODS,
    VARIANTS,
    recorded_runs,
    report,
)

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.experiments.records import ENV_STEPS, TEAM_RETURN
from rllib_hatrpo.experiments.tune import METHOD, SEED

ROOT = Path(__file__).resolve().parents[1]
TUNED_EXAMPLES = ROOT / "tuned_examples"


def load_tasks() -> dict[str, Any]:
    """Every tuned example's ``TASK``, keyed by its name."""
    tasks = {}
    for path in sorted(TUNED_EXAMPLES.glob("*/*.py")):
        spec = importlib.util.spec_from_file_location(f"tuned_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        task = getattr(module, "TASK", None)
        if task is not None:
            tasks[task.name] = task
    return tasks


def check_campaign(folder: Path, task: str, plan: dict[str, Any], flag: str = "--out") -> None:
    """Records ``plan`` for ``task`` in ``folder/campaign.json``; refuses a different plan."""
    from rllib_hatrpo.experiments.plans import PlanMismatchError, check_same_plan

    try:
        check_same_plan(
            folder / CAMPAIGN_FILE,
            plan,
            section=task,
            what=f"task {task}",
            hint=f"Rerun with the same --methods/--seeds/--env-steps, or choose another {flag}.",
        )
    except PlanMismatchError as err:
        raise SystemExit(
            f"{flag} {folder}: {err.render(lambda key: '--' + key.replace('_', '-'))}"
        ) from err


def task_plan(task: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What ``campaign.json`` records for ``task``: methods, seeds, env-step budget."""
    env_steps = args.env_steps or task.env_steps
    return {"methods": list(args.methods), "seeds": list(args.seeds), "env_steps": env_steps}


def train_task(task: Any, args: argparse.Namespace) -> None:
    """Trains (or resumes) every (method, seed) trial of ``task`` in one Tune experiment."""
    from ray import tune

    from rllib_hatrpo.experiments.tune import (
        experiment_exists,
        make_trainable,
        restore_or_create_tuner,
    )

    plan = task_plan(task, args)
    env_steps = plan["env_steps"]
    check_campaign(args.out, task.name, plan)
    runs = runs_to_train(plan, recorded_runs(args.data, task.name, env_steps))
    storage = str((args.out / "tune").absolute())
    if not runs and not experiment_exists(storage, task.name):
        print(f"{task.name}: every run is recorded in {args.data}", flush=True)
        return
    trainable = make_trainable(
        functools.partial(trial_config, task),
        env_steps=env_steps,
        checkpoint_every=args.checkpoint_every,
    )
    tuner = restore_or_create_tuner(
        storage,
        task.name,
        trainable,
        max_failures=2,
        log=lambda line: print(line, flush=True),
        param_space={METHOD: tune.choice(plan["methods"]), SEED: tune.choice(plan["seeds"])},
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN,
            mode="max",
            num_samples=len(runs),
            search_alg=run_queue(runs, args.max_concurrent_trials),
        ),
    )
    results = tuner.fit()
    if results.errors:
        print(f"{task.name}: {len(results.errors)} trial(s) errored; rerun to resume them.")
    short = unfinished(results, env_steps)
    if short:
        raise SystemExit(
            f"{task.name}: {short} trial(s) stopped short of {env_steps:,} env steps (the "
            "experiment was interrupted); rerun the same command to continue it."
        )


def runs_to_train(plan: dict[str, Any], recorded: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """The plan's (method, seed) runs not in ``recorded``, as Tune parameters, seed by seed.

    Seed-major order starts every method's seed k before any seed k + 1, so paired seeds
    come first when a campaign stops part-way.
    """
    return [
        {METHOD: method, SEED: seed}
        for seed in plan["seeds"]
        for method in plan["methods"]
        if (method, seed) not in recorded
    ]


def run_queue(runs: list[dict[str, Any]], max_concurrent_trials: int) -> Any:
    """Tune's search algorithm for ``runs``: started in their order, ``max_concurrent_trials``
    at a time.

    A trial is created only when a slot frees (``max_concurrent``), and the queue of runs not
    yet created is saved in order with the experiment, so the order holds after a restore too.
    (Tune starts trials that were created ahead in no set order, and ignores
    ``TuneConfig.max_concurrent_trials`` beside a search algorithm of this kind.)
    """
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=runs, max_concurrent=max_concurrent_trials)


def unfinished(results: Any, env_steps: int) -> int:
    """How many trials of a ``ResultGrid`` neither errored nor reached ``env_steps``.

    Tune's ``fit`` returns normally when it is interrupted (SIGINT, SIGTERM); its unfinished
    trials are told apart by their last reported env-step count.
    """
    return sum(
        1
        for result in results
        if result.error is None and (result.metrics or {}).get(ENV_STEPS, 0) < env_steps
    )


def trial_config(task: Any, params: dict[str, Any]) -> Any:
    """The trial's config: ``task.build_trial_config`` with a ``VARIANTS`` method resolved."""
    params = dict(params)
    base, change = VARIANTS.get(params.get(METHOD, ALLOCATOR_NAMES[0]), (None, None))
    if base is None:
        return task.build_trial_config(params)
    return change(task.build_trial_config({**params, METHOD: base}))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: tasks, methods, seeds, budget, output folders, resources."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=None, help="tuned example names")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=None, help="override every budget")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compare")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "docs" / "data" / "compare", help="raw results"
    )
    parser.add_argument("--max-concurrent-trials", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs")
    parser.add_argument("--report-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Trains (or resumes) every task's campaign unless ``--report-only``, then reports."""
    args = parse_args(argv)
    available = load_tasks()
    names = args.tasks or sorted(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; tuned examples: {sorted(available)}")
    if not args.report_only:
        for name in names:  # the whole plan is recorded (and checked) before any training
            check_campaign(args.out, name, task_plan(available[name], args))
        import ray

        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
        for name in names:
            train_task(available[name], args)
    campaign_file = args.out / CAMPAIGN_FILE
    if not campaign_file.is_file():  # a checkout without Tune's folders: the committed plan
        campaign_file = args.data / CAMPAIGN_FILE
    campaign = json.loads(campaign_file.read_text()) if campaign_file.is_file() else {}
    for task, plan in campaign.items():  # one campaign per raw-results folder
        check_campaign(args.data, task, plan, flag="--data")
    # The summary covers every task recorded in --data (the checks above have recorded the
    # campaign's there too), not only --tasks: continuing one task keeps the others' rows.
    data_file = args.data / CAMPAIGN_FILE
    recorded = json.loads(data_file.read_text()) if data_file.is_file() else {}
    tasks = [*names, *(task for task in recorded if task not in names)]
    print(report(args.out / "tune", args.data, tasks, recorded))


if __name__ == "__main__":
    sys.exit(main())
