"""Tuned examples: one task, its tuned settings, its expected results, trained through Tune.

Every script under ``tuned_examples/`` defines one :class:`TunedTask` and calls
:func:`rllib_hatrpo.cli.tuned_example.run_tuned_example` (its command line), which
trains it with :func:`train_task`; ``benchmarks/compare.py`` imports the same ``TASK``
objects, so the comparison trains exactly the tuned settings. A task's ``expected`` returns
are the one place its expected numbers live: they fill the script's docstring and drive
``--as-test`` (:meth:`TunedTask.meets`).

RLlib's PPO twin (:meth:`TunedTask.ppo_config`) gets the same env, env config, sampler
settings, batch size, γ, λ, network sizes and seed; one module per agent, each with its own
value function on the agent's observation (RLlib's default PPO architecture).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.experiments.plans import (
    check_plan,
    check_same_plan,
    record_plan,
    rename_shorter_run,
)
from rllib_hatrpo.experiments.records import ENV_STEPS, TEAM_RETURN
from rllib_hatrpo.experiments.spec import ref
from rllib_hatrpo.experiments.summaries import FINAL_FRACTION, final_return
from rllib_hatrpo.experiments.tune import (
    METHOD,
    SEED,
    make_trainable,
    read_trials,
    restore_or_create_tuner,
)

#: The method name of RLlib's PPO (:meth:`TunedTask.ppo_config`).
PPO = "ppo"
#: Methods a task can train: every allocator and RLlib's PPO.
METHODS = (*ALLOCATOR_NAMES, PPO)
#: File of a task's Tune experiment folder recording its plan (method, seeds, budget, ...).
PLAN_FILE = "tuned_example.json"
#: Default checkpoint interval of a task's trials (iterations).
DEFAULT_CHECKPOINT_EVERY = 5

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
        self,
        method: str = "uniform",
        seed: int = 0,
        num_env_runners: int = 0,
        num_learners: int = 0,
        num_gpus_per_learner: float = 0,
        **training: Any,
    ) -> Any:
        """The ``AlgorithmConfig`` of ``method`` (an allocator name or ``"ppo"``).

        Args:
            method: An allocator name or ``"ppo"``.
            seed: The seed.
            num_env_runners: Remote EnvRunners (0: sample in the trial's process).
            num_learners: Learner actors (0: one learner in the trial's process).
            num_gpus_per_learner: GPUs of each learner (0: CPU).
            **training: More ``training(...)`` settings.
        """
        if method not in METHODS:
            raise ValueError(f"method={method!r}: choose one of {', '.join(METHODS)}")
        if method == PPO:
            config = self.ppo_config()
        else:
            from rllib_hatrpo import HATRPOConfig

            config = HATRPOConfig().training(**{**self.hatrpo_training, "kl_allocator": method})
        from rllib_hatrpo.callbacks import TeamReturnCallback

        return (
            config.environment(self.env_class(), env_config=dict(self.env_config))
            .env_runners(
                num_env_runners=num_env_runners,
                num_envs_per_env_runner=self.num_envs_per_env_runner,
                rollout_fragment_length="auto",
            )
            .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
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

        agents = self.env_class()(dict(self.env_config)).possible_agents
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

    def env_class(self) -> type:
        """The class of the task's env (``rllib_hatrpo.envs.ENV_SUITES``)."""
        from rllib_hatrpo.envs import ENV_SUITES

        return ENV_SUITES[self.env].load()

    def build_trial_config(self, params: Mapping[str, Any]) -> Any:
        """Tune parameters (``method``, ``seed``, ``num_env_runners``, ...) -> config."""
        params = dict(params)
        return self.config(
            params.pop(METHOD, ALLOCATOR_NAMES[0]),
            params.pop(SEED, 0),
            params.pop("num_env_runners", 0),
            params.pop("num_learners", 0),
            params.pop("num_gpus_per_learner", 0),
            **params,
        )

    def meets(self, method: str, result: SeedResult, env_steps: int) -> bool:
        """Whether a seed reached the expected final return for ``method`` after the budget.

        A method without an expectation only needs the budget.
        """
        want = self.expected.get(method, -math.inf)
        return result.final_return >= want and result.env_steps >= env_steps

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

Training goes through Ray Tune (one trial per seed, checkpoints every
{DEFAULT_CHECKPOINT_EVERY} iterations); rerunning the same command resumes an interrupted
experiment. Results land in ``results/tuned_examples/``."""

    def expected_text(self) -> str:
        """The "Results to expect" paragraph of the task's docstring."""
        if not self.expected:
            return (
                f"Not measured yet at {self.env_steps:,} env steps: `--as-test` exits 2 until "
                "`expected` holds a measured threshold."
            )
        lines = [
            f"Final team return (mean of the last {FINAL_FRACTION * 100:.0f} % of iterations) "
            f"after {self.env_steps:,} env steps, at least:",
            "",
        ]
        lines += [f"- {method}: {value:,.1f}" for method, value in self.expected.items()]
        return "\n".join([*lines, "", textwrap.fill(self.expected_note, width=96)])


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """What one seed's trial of a task reached.

    Attributes:
        seed: The seed.
        final_return: Its final team return
            (:func:`~rllib_hatrpo.experiments.summaries.final_return`).
        env_steps: The env steps it sampled.
    """

    seed: int
    final_return: float
    env_steps: int


def experiment_name(task: TunedTask, method: str, env_steps: int) -> str:
    """The Tune experiment of ``task`` trained with ``method`` to ``env_steps``."""
    return f"{task.name}_{method}_{env_steps}"


def check_same_task_plan(storage_path: str, name: str, plan: Mapping[str, Any]) -> bool:
    """Records the plan of experiment ``name``, or refuses a plan other than the recorded one.

    Only for a local ``storage_path`` (a URI is not checked).

    Returns:
        Whether the plan was recorded before.

    Raises:
        PlanMismatchError: The experiment was started with other settings.
    """
    if "://" in storage_path:
        return False
    folder = Path(storage_path, name)
    return check_same_plan(
        folder / PLAN_FILE,
        plan,
        what="a tuned example run",
        hint="Rerunning resumes that experiment with its own settings: to train others, use "
        f"another {ref('storage_path')} (or delete {folder}).",
    )


def check_task_plan(storage_path: str, name: str, plan: Mapping[str, Any]) -> bool:
    """:func:`check_same_task_plan`, but a larger ``stop_timesteps`` is accepted.

    Returns:
        Whether ``plan`` raises the recorded ``stop_timesteps`` (the run is extended; record
        the plan with :func:`~rllib_hatrpo.experiments.plans.record_plan` once it trained).
    """
    if "://" in storage_path:
        return False
    folder = Path(storage_path, name)
    _, raised = check_plan(
        folder / PLAN_FILE,
        plan,
        what="a tuned example run",
        hint="Rerunning resumes that experiment with its own settings: to train others, use "
        f"another {ref('storage_path')} (or delete {folder}).",
        growable=("stop_timesteps",),
    )
    return bool(raised)


def train_task(
    task: TunedTask,
    *,
    method: str = ALLOCATOR_NAMES[0],
    seeds: Sequence[int] = (0,),
    env_steps: int | None = None,
    storage_path: str | Path = Path("results", "tuned_examples"),
    num_env_runners: int = 0,
    num_learners: int = 0,
    num_gpus_per_learner: float = 0,
    max_concurrent_trials: int | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    log: Callable[[str], None] | None = None,
) -> tuple[str, list[SeedResult]]:
    """Trains ``task`` through Ray Tune, one trial per seed, or resumes that experiment.

    Ray must be running. The experiment is ``<storage_path>/<task>_<method>_<env_steps>``; a
    rerun restores it (finished trials are kept, the others continue from their last
    checkpoints) after checking that ``method``, ``seeds``, ``env_steps``, ``num_env_runners``
    and the learner settings are those it was started with. A larger ``env_steps`` extends
    the longest shorter run of the same settings
    (:func:`~rllib_hatrpo.experiments.plans.rename_shorter_run`): its folder is
    renamed to the new budget and every trial, finished ones too, continues from its last
    checkpoint to ``env_steps``.

    Args:
        task: The task.
        method: An allocator name or ``"ppo"``.
        seeds: One trial per seed.
        env_steps: Env steps per trial (default: the task's budget).
        storage_path: Tune's storage (a local folder, or shared storage on a cluster).
        num_env_runners: Remote EnvRunners per trial (0: sample in the trial's process).
        num_learners: Learner actors per trial (0: one learner in the trial's process).
        num_gpus_per_learner: GPUs of each learner (0: CPU).
        max_concurrent_trials: Trials at once (default: as many as the CPUs allow).
        checkpoint_every: Iterations between a trial's checkpoints.
        log: Receives the line saying that an experiment is resumed.

    Returns:
        (the experiment's folder, what each seed that reported reached, by seed).

    Raises:
        PlanMismatchError: The experiment folder holds a run with other settings.
    """
    from ray import tune

    env_steps = env_steps or task.env_steps
    storage = str(Path(storage_path).absolute()) if "://" not in str(storage_path) else storage_path
    name = experiment_name(task, method, env_steps)
    resources = {"num_env_runners": num_env_runners}
    # The learner settings only when given: a plan recorded before they existed still matches.
    if num_learners:
        resources["num_learners"] = num_learners
    if num_gpus_per_learner:
        resources["num_gpus_per_learner"] = num_gpus_per_learner
    plan = {METHOD: method, "seeds": list(seeds), "stop_timesteps": env_steps, **resources}
    prefix = experiment_name(task, method, "")
    rename_shorter_run(storage, name, prefix, plan, PLAN_FILE, growable=("stop_timesteps",))
    extend = check_task_plan(storage, name, plan)
    trainable = make_trainable(
        task.build_trial_config,
        env_steps=env_steps,
        checkpoint_every=checkpoint_every,
        resources_params=resources,
    )
    tuner = restore_or_create_tuner(
        storage,
        name,
        trainable,
        log=log,
        resume_finished=extend,
        param_space={
            METHOD: method,
            SEED: tune.grid_search(list(seeds)),
            **resources,
        },
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN, mode="max", max_concurrent_trials=max_concurrent_trials
        ),
    )
    tuner.fit()
    path = f"{storage.rstrip('/')}/{name}"
    if extend:
        record_plan(Path(path, PLAN_FILE), plan)  # every trial went on to the new stop
    return path, seed_results(path)


def seed_results(experiment: str | Path) -> list[SeedResult]:
    """What each seed of a task's Tune experiment reached, by seed.

    Seeds whose trial reported nothing yet are left out.
    """
    curves = read_trials(experiment)
    if curves.empty:
        return []
    return [
        SeedResult(int(seed), final_return(curve), int(curve[ENV_STEPS].max()))
        for seed, curve in curves.groupby(SEED)
    ]
