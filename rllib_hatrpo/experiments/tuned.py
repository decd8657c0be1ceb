"""Tuned examples: one task, its tuned settings, its expected results and a Tune runner.

Every script under ``tuned_examples/`` defines one :class:`TunedTask` and calls
:func:`run_tuned_example`; ``benchmarks/compare.py`` imports the same ``TASK`` objects, so
the comparison trains exactly the tuned settings. A task's ``expected`` returns are the one
place its expected numbers live: they fill the script's docstring and drive ``--as-test``.

RLlib's PPO twin (:meth:`TunedTask.ppo_config`) gets the same env, env config, sampler
settings, batch size, γ, λ, network sizes and seed; one module per agent, each with its own
value function on the agent's observation (RLlib's default PPO architecture).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.experiments.tune import (
    TEAM_RETURN,
    final_return,
    make_trainable,
    read_trials,
    restore_or_create_tuner,
)

#: Methods a comparison can train: the three allocators and RLlib's PPO.
METHODS = ("uniform", "kkt", "greedy", "ppo")

#: Settings every task shares, HATRPO and PPO alike (a task's ``training`` overrides them).
COMMON_TRAINING: Mapping[str, Any] = {
    "gamma": 0.99,
    "lambda_": 0.95,
    "train_batch_size_per_learner": 4000,
}

#: RLlib PPO settings of every task's PPO twin.
PPO_TRAINING: Mapping[str, Any] = {"lr": 3e-4, "num_epochs": 5, "minibatch_size": 500}


@dataclasses.dataclass(frozen=True)
class TunedTask:
    """One environment with its tuned HATRPO settings and the results they reach.

    Attributes:
        name: Short name, e.g. ``"halfcheetah_2x3"`` (Tune experiment and plot label).
        env: A registered env name of this package (``rllib_hatrpo.envs.ENV_CLASSES``).
        env_config: The env's config.
        env_steps: The stop criterion: env steps per run on a laptop-sized machine.
        training: ``HATRPOConfig.training`` overrides (the tuned hyperparameters), on top of
            :data:`COMMON_TRAINING`.
        expected: Method -> the final team return (mean of the last 10 % of iterations)
            that ``--as-test`` requires at ``env_steps``; methods without an entry are not
            checked.
        expected_note: How the expected numbers were obtained (budget, seeds, versions).
        num_envs_per_env_runner: Vectorised envs per EnvRunner.
        episodes_for_smoothing: Episodes in the team return's moving window.
        ppo_training: ``PPOConfig.training`` overrides of the PPO twin.
    """

    name: str
    env: str
    env_config: Mapping[str, Any]
    env_steps: int
    training: Mapping[str, Any]
    expected: Mapping[str, float]
    expected_note: str
    num_envs_per_env_runner: int = 4
    episodes_for_smoothing: int = 100
    ppo_training: Mapping[str, Any] = dataclasses.field(default_factory=lambda: PPO_TRAINING)

    def config(
        self, method: str = "uniform", seed: int = 0, num_env_runners: int = 0, **training: Any
    ) -> Any:
        """The ``AlgorithmConfig`` of ``method`` (an allocator name or ``"ppo"``)."""
        if method not in METHODS:
            raise ValueError(f"method={method!r}: choose one of {', '.join(METHODS)}")
        if method == "ppo":
            config = self.ppo_config()
        else:
            from rllib_hatrpo import HATRPOConfig

            config = HATRPOConfig().training(**{**self.hatrpo_training, "kl_allocator": method})
        from rllib_hatrpo.callbacks import TeamReturnCallback
        from rllib_hatrpo.envs import ENV_CLASSES

        return (
            config.environment(ENV_CLASSES[self.env], env_config=dict(self.env_config))
            .env_runners(
                num_env_runners=num_env_runners,
                num_envs_per_env_runner=self.num_envs_per_env_runner,
                rollout_fragment_length="auto",
            )
            .training(**training)
            .callbacks(TeamReturnCallback)
            .reporting(metrics_num_episodes_for_smoothing=self.episodes_for_smoothing)
            .debugging(seed=seed)
        )

    def ppo_config(self) -> Any:
        """RLlib's PPO with one module per agent and this task's shared settings."""
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        from rllib_hatrpo import agent_to_module
        from rllib_hatrpo.envs import ENV_CLASSES

        agents = ENV_CLASSES[self.env](dict(self.env_config)).possible_agents
        training = self.hatrpo_training
        hidden = list(training.get("actor_hidden_sizes", [128, 128]))
        shared = {
            key: training[key]
            for key in ("gamma", "lambda_", "train_batch_size_per_learner")
            if key in training
        }
        return (
            PPOConfig()
            .training(**{**shared, **self.ppo_training})
            .rl_module(
                model_config=DefaultModelConfig(
                    fcnet_hiddens=hidden, fcnet_activation="relu", head_fcnet_hiddens=[]
                )
            )
            .multi_agent(policies=list(agents), policy_mapping_fn=agent_to_module)
        )

    def build_trial_config(self, params: Mapping[str, Any]) -> Any:
        """Tune parameters (``method``, ``seed``, ``num_env_runners``, ...) -> config."""
        params = dict(params)
        return self.config(
            params.pop("method", "uniform"),
            params.pop("seed", 0),
            params.pop("num_env_runners", 0),
            **params,
        )

    @property
    def hatrpo_training(self) -> dict[str, Any]:
        """The task's HATRPO ``training`` settings: :data:`COMMON_TRAINING` + ``training``."""
        return {**COMMON_TRAINING, **self.training}

    def usage_text(self) -> str:
        """The "How to run" section of the task's docstring."""
        script = f"tuned_examples/{self.env}/{self.name}.py"
        return f"""How to run
----------
From the repository root (``pip install -e ".[{self.env}]"`` first)::

    python {script}                       # uniform, seed 0
    python {script} --allocator kkt --seeds 0 1 2
    python {script} --as-test             # exit 1 if short
    RAY_ADDRESS=auto python {script} --num-env-runners 4 \\
        --seeds 0 1 2 3 --stop-timesteps 2000000   # on a Ray cluster

Training goes through Ray Tune (one trial per seed, checkpoints every 5 iterations); rerunning
the same command resumes an interrupted experiment. Results land in
``results/tuned_examples/``."""

    def expected_text(self) -> str:
        """The "Results to expect" paragraph of the task's docstring."""
        if not self.expected:
            return (
                f"Not measured yet at {self.env_steps:,} env steps: `--as-test` exits 2 until "
                "`expected` holds a measured threshold."
            )
        lines = [
            f"Final team return (mean of the last 10 % of iterations) after "
            f"{self.env_steps:,} env steps, at least:",
            "",
        ]
        lines += [f"- {method}: {value:,.1f}" for method, value in self.expected.items()]
        return "\n".join([*lines, "", textwrap.fill(self.expected_note, width=96)])


def parse_args(task: TunedTask, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f"HATRPO tuned example: {task.name}. Trains through Ray Tune; set "
        "RAY_ADDRESS (or run under `ray job submit`) to use a cluster."
    )
    parser.add_argument(
        "--method",
        "--allocator",
        dest="method",
        default="uniform",
        choices=METHODS,
        help="allocator (uniform, kkt, greedy) or RLlib's ppo for comparison",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one trial per seed")
    parser.add_argument(
        "--stop-timesteps",
        type=int,
        default=task.env_steps,
        help=f"env steps per trial (default {task.env_steps:,})",
    )
    parser.add_argument(
        "--as-test",
        action="store_true",
        help="exit 1 unless every seed reaches the expected final return",
    )
    parser.add_argument("--num-env-runners", type=int, default=0)
    parser.add_argument(
        "--max-concurrent-trials",
        type=int,
        default=None,
        help="trials at once (default: as many as the cluster's CPUs allow)",
    )
    parser.add_argument(
        "--storage-path",
        default=str(Path("results", "tuned_examples").absolute()),
        help="Tune storage (a local folder, or shared storage such as s3://... on a cluster)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=5)
    return parser.parse_args(argv)


def run_tuned_example(task: TunedTask, argv: Sequence[str] | None = None) -> int:
    """Trains ``task`` through Ray Tune (one trial per seed); returns the exit code.

    A rerun of the same command resumes an interrupted experiment from its checkpoints.
    """
    import ray
    from ray import tune

    args = parse_args(task, argv)
    if args.as_test and args.method not in task.expected:
        print(f"--as-test: {task.name} has no expected return for {args.method}", file=sys.stderr)
        return 2
    ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    trainable = make_trainable(
        task.build_trial_config,
        env_steps=args.stop_timesteps,
        checkpoint_every=args.checkpoint_every,
        resources_params={"num_env_runners": args.num_env_runners},
    )
    name = f"{task.name}_{args.method}_{args.stop_timesteps}"
    path = os.path.join(args.storage_path, name)
    tuner = restore_or_create_tuner(
        args.storage_path,
        name,
        trainable,
        param_space={
            "method": args.method,
            "seed": tune.grid_search(args.seeds),
            "num_env_runners": args.num_env_runners,
        },
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN, mode="max", max_concurrent_trials=args.max_concurrent_trials
        ),
    )
    tuner.fit()
    curves = read_trials(path)
    print(f"\n{task.name}, {args.method}, {args.stop_timesteps:,} env steps: {path}")
    failed = False
    groups = list(curves.groupby("seed")) if not curves.empty else []
    for seed, curve in groups:
        final = final_return(curve)
        steps = int(curve["env_steps"].max())
        want = task.expected.get(args.method, -math.inf)
        ok = final >= want and steps >= args.stop_timesteps
        failed |= not ok
        print(
            f"  seed {seed}: final team return {final:,.2f} after {steps:,} env steps"
            + (f" (expected >= {want:,.2f}: {'ok' if ok else 'FAILED'})" if args.as_test else "")
        )
    if args.as_test and (failed or len(groups) < len(args.seeds)):
        print("--as-test: FAILED", file=sys.stderr)
        return 1
    return 0
