"""HATRPO: heterogeneous-agent trust region policy optimisation with an allocated joint KL
budget, as an RLlib ``Algorithm`` on the new API stack.

Each iteration samples episodes, updates the central critic, lets the KL allocator choose the
agent order and each agent's budget δ_i with Σ_i δ_i ≤ δ_total, then takes sequential per-agent
TRPO steps with the compound importance ratio ([1], Algorithm 1; [2]).

References:
    [1] Kuba et al., Trust Region Policy Optimisation in Multi-Agent Reinforcement Learning,
        ICLR 2022, arXiv:2109.11251.
    [2] Shek, Shi & Tokekar, Multi-Agent Trust Region Policy Optimisation: A Joint Constraint
        Approach, arXiv:2508.10340.
    [3] Zhong et al., Heterogeneous-Agent Reinforcement Learning, JMLR 25 (2024),
        arXiv:2304.09870 (the HARL defaults used here).

Examples:
    >>> from rllib_hatrpo import HATRPOConfig
    >>> from rllib_hatrpo.envs import DifferentialGameEnv
    >>> config = (
    ...     HATRPOConfig()
    ...     .environment(DifferentialGameEnv)
    ...     .training(kl_threshold=0.01, kl_allocator="kkt", train_batch_size_per_learner=256)
    ... )
    >>> config.get_total_kl_budget(n_agents=2)
    0.02
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rllib_hatrpo.callbacks import TeamReturnCallback
from rllib_hatrpo.default_hatrpo_rl_module import DEFAULT_INPUT_NORMALIZATION, SHARED_CRITIC_ID
from rllib_hatrpo.hatrpo_config_checks import validate_hatrpo_config
from rllib_hatrpo.input_normalization import (
    REPLACED_SETTING,
    InputNormalization,
    replaced_setting_error,
)
from rllib_hatrpo.team_env_runner import TeamEnvRunner
from rllib_hatrpo.torch.distributed import balanced_shards

logger = logging.getLogger(__name__)

#: Sampling attempts per iteration before an iteration without any env step is an error.
MAX_EMPTY_SAMPLE_ATTEMPTS = 3


def agent_to_module(agent_id: str, episode: Any = None, **kwargs) -> str:
    """HATRPO's policy mapping: every agent has its own module, named after it."""
    return agent_id


class HATRPOConfig(AlgorithmConfig):
    """Configuration of :class:`HATRPO`; defaults are HARL's HATRPO values ([3]).

    Set the HATRPO hyperparameters with :meth:`training`; everything else (``environment``,
    ``env_runners``, ``learners``, ``multi_agent``, ``debugging(seed=...)``) is RLlib's.
    Without a ``multi_agent(...)`` call, every agent of the env gets its own module.
    """

    def __init__(self, algo_class: type | None = None):
        super().__init__(algo_class=algo_class or HATRPO)
        # RLlib settings HATRPO changes.
        self.train_batch_size_per_learner = 4000  # HARL: 20 envs × 200 steps
        self.rollout_fragment_length = "auto"
        self.gamma = 0.99
        self.grad_clip = 10.0  # the critic's gradient-norm clip
        self.grad_clip_by = "global_norm"
        self.callbacks_class = TeamReturnCallback
        # N envs in lockstep, one forward pass per agent (RLlib's runner: MultiAgentEnvRunner).
        self.env_runner_cls = TeamEnvRunner
        # The joint KL budget and its allocation.
        self.kl_threshold = 0.01
        self.total_kl_budget: float | None = None
        self.kl_allocator: Any = "uniform"
        self.kl_allocator_config: dict[str, Any] = {}
        # The trust-region step.
        self.cg_iters = 10
        self.cg_residual_tol = 1e-10
        self.fvp_damping = 0.1
        self.fvp_subsample = 5
        self.line_search_steps = 10
        self.backtrack_coeff = 0.8
        self.accept_ratio = 0.5
        # The central critic and the advantages.
        self.lambda_ = 0.95
        self.critic_lr = 5e-4
        self.critic_optimizer_eps = 1e-5
        self.critic_epochs = 5
        self.critic_num_minibatches = 1
        self.value_clip_param: float | None = 0.2
        self.huber_delta: float | None = 10.0
        self.use_value_norm = True
        # Networks.
        self.actor_hidden_sizes: list[int] = [128, 128]
        self.critic_hidden_sizes: list[int] = [128, 128]
        self.activation = "relu"
        self.input_normalization: InputNormalization = DEFAULT_INPUT_NORMALIZATION
        self.initial_log_std = -1.0
        # Image inputs: the CNN before the MLP (rllib_hatrpo.default_hatrpo_rl_module).
        self.cnn_filters: list[list[Any]] = [
            [16, 8, 4, "same"],
            [32, 4, 2, "same"],
            [32, 3, 1, "same"],
        ]
        # The train batch's estimated memory (rllib_hatrpo.hatrpo_config_checks).
        self.max_batch_memory_gib: float | None = 8.0

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        kl_threshold: float | None = NotProvided,
        total_kl_budget: float | None = NotProvided,
        kl_allocator: Any = NotProvided,
        kl_allocator_config: dict[str, Any] | None = NotProvided,
        cg_iters: int | None = NotProvided,
        cg_residual_tol: float | None = NotProvided,
        fvp_damping: float | None = NotProvided,
        fvp_subsample: int | None = NotProvided,
        line_search_steps: int | None = NotProvided,
        backtrack_coeff: float | None = NotProvided,
        accept_ratio: float | None = NotProvided,
        lambda_: float | None = NotProvided,
        critic_lr: float | None = NotProvided,
        critic_optimizer_eps: float | None = NotProvided,
        critic_epochs: int | None = NotProvided,
        critic_num_minibatches: int | None = NotProvided,
        value_clip_param: float | None = NotProvided,
        huber_delta: float | None = NotProvided,
        use_value_norm: bool | None = NotProvided,
        actor_hidden_sizes: list[int] | None = NotProvided,
        critic_hidden_sizes: list[int] | None = NotProvided,
        activation: str | None = NotProvided,
        input_normalization: InputNormalization | None = NotProvided,
        initial_log_std: float | None = NotProvided,
        cnn_filters: list[list[Any]] | None = NotProvided,
        max_batch_memory_gib: float | None = NotProvided,
        **kwargs,
    ) -> HATRPOConfig:
        """Sets the HATRPO hyperparameters (and, through ``kwargs``, RLlib's).

        Args:
            kl_threshold: δ, HATRPO's per-agent KL radius (HARL: 0.01 for 2-agent MaMuJoCo,
                0.005 for MPE, Ant 4x2 and Walker 6x1). Larger steps learn faster until the
                quadratic KL model breaks and line searches start to fail.
            total_kl_budget: δ_total, the joint budget Σ_i KL_i ≤ δ_total that the allocator
                splits. None (default) means n · kl_threshold, so that "uniform" is exactly
                HATRPO and all allocators are compared at equal total budget.
            kl_allocator: "uniform" (HATRPO: δ_total/n each, random order), "kkt" (HATRPO-W:
                closed-form KKT split by natural-gradient norm), "greedy" (HATRPO-G: best
                improvement per KL first), or a subclass of
                :class:`rllib_hatrpo.core.allocation.KLAllocator`.
            kl_allocator_config: keyword options of the allocator (e.g. kkt's ``min_share``,
                ``max_share``, ``carry_over``, ``share_smoothing``; greedy's ``score_eps``).
            cg_iters: conjugate-gradient iterations for x ≈ F⁻¹g (10). More iterations give a
                more exact natural gradient at the price of one Fisher-vector product each.
            cg_residual_tol: CG stops early once the squared residual is below this (1e-10).
            fvp_damping: λ in (F + λI)x = g (0.1); keeps CG stable when F is near singular,
                and shortens steps along directions of low curvature.
            fvp_subsample: k ≥ 1: CG's Fisher-vector products use every k-th of each agent's
                valid active rows (5; 1: the full batch). They are most of a learner update,
                so k > 1 makes it cheaper (k = 5: about 3× on HalfCheetah 6x1, see
                benchmarks/fvp_subsample.py); F, and with it x ≈ F⁻¹g and the step size
                sqrt(2δ / xᵀFx), is then a noisier estimate, while g, the line search
                (KL ≤ δ_i, improvement) and the logged KL still use the whole batch. k = 5
                learned as well as k = 1 on HalfCheetah 2x3 and 6x1 (3 seeds × 1M env steps).
                With several learners, each takes every k-th row of its own shard and the
                products are summed over the learners.
            line_search_steps: backtracking tries before a step is rejected (10).
            backtrack_coeff: factor by which each try shrinks the step (0.8).
            accept_ratio: a try needs actual/expected improvement above this (0.5).
            lambda_: GAE λ (0.95): lower is less variance, more bias.
            critic_lr: Adam learning rate of the central critic (5e-4).
            critic_optimizer_eps: Adam epsilon of the critic (1e-5).
            critic_epochs: passes of the critic over the batch per iteration (5).
            critic_num_minibatches: minibatches per critic pass (1: full batch).
            value_clip_param: clip of the value change against the old prediction (0.2;
                None disables clipping).
            huber_delta: δ of the critic's Huber loss (10.0; None for squared error).
            use_value_norm: normalise value targets with their running mean/std (True).
            actor_hidden_sizes: hidden layer sizes of every actor MLP ([128, 128]).
            critic_hidden_sizes: hidden layer sizes of the critic MLP ([128, 128]).
            activation: "relu" or "tanh" for both networks.
            input_normalization: the first layer of every network: "mean_std" (default: each
                input feature normalised by its running mean and std, clip((x − μ) /
                sqrt(σ² + 1e-8), ±10), statistics updated by the learner at the end of each
                update and carried to the EnvRunners with the weights), "layer_norm" (HARL's
                LayerNorm over the features of each input; it maps a 1-feature input to a
                constant) or "none". Replaces ``input_layer_norm`` (True → "layer_norm").
            initial_log_std: initial log standard deviation of Gaussian actors (−1.0).
            cnn_filters: the convolutional encoder of image inputs (observations or a global
                state that are a ``Box`` of rank 3, (H, W, C)), before the MLP layers: one
                ``[out_channels, kernel, stride]`` or ``[out_channels, kernel, stride,
                "same" | "valid"]`` per layer, RLlib's ``CNNEncoderConfig`` format (default:
                Nature-CNN's kernels and strides, half its channels, "same" padding:
                ``[[16, 8, 4, "same"], [32, 4, 2, "same"], [32, 3, 1, "same"]]``).
                ``validate()`` rejects a spec that does not fit an image.
            max_batch_memory_gib: the most memory, in GiB, that ``validate()`` lets the train
                batch's observations and global states take, estimated with the copies RLlib
                makes (8.0; None: no check). See
                :func:`rllib_hatrpo.hatrpo_config_checks.estimate_batch_memory`.

        Raises:
            ValueError: ``input_layer_norm`` is given (replaced by ``input_normalization``).
        """
        if REPLACED_SETTING in kwargs:
            raise replaced_setting_error(kwargs[REPLACED_SETTING])
        super().training(**kwargs)
        for name, value in list(locals().items()):
            if name not in ("self", "kwargs", "__class__") and value is not NotProvided:
                setattr(self, name, value)
        return self

    def get_total_kl_budget(self, n_agents: int) -> float:
        """δ_total: ``total_kl_budget`` if set, else n · ``kl_threshold``."""
        if self.total_kl_budget is not None:
            return float(self.total_kl_budget)
        return n_agents * float(self.kl_threshold)

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from rllib_hatrpo.torch.default_hatrpo_torch_rl_module import DefaultHATRPOTorchRLModule

        return RLModuleSpec(
            module_class=DefaultHATRPOTorchRLModule,
            model_config={
                "hidden_sizes": list(self.actor_hidden_sizes),
                "activation": self.activation,
                "input_normalization": self.input_normalization,
                "initial_log_std": self.initial_log_std,
                "cnn_filters": self.cnn_filters,
            },
        )

    @override(AlgorithmConfig)
    def get_multi_rl_module_spec(
        self, *, inference_only: bool = False, **kwargs
    ) -> MultiRLModuleSpec:
        """The actors' spec (one per agent) plus, on learners, the central critic."""
        spec = super().get_multi_rl_module_spec(inference_only=inference_only, **kwargs)
        if inference_only or SHARED_CRITIC_ID in spec.rl_module_specs:
            return spec
        from rllib_hatrpo.env_probe import probe_env
        from rllib_hatrpo.torch.shared_critic_torch_rl_module import SharedCriticTorchRLModule

        probe = probe_env(self.env, self.env_config)
        spec.add_modules(
            {
                SHARED_CRITIC_ID: RLModuleSpec(
                    module_class=SharedCriticTorchRLModule,
                    observation_space=probe.state_space,
                    action_space=probe.action_spaces[probe.agents[0]],  # unused, must be valid
                    learner_only=True,
                    model_config={
                        "hidden_sizes": list(self.critic_hidden_sizes),
                        "activation": self.activation,
                        "input_normalization": self.input_normalization,
                        "use_value_norm": self.use_value_norm,
                        "cnn_filters": self.cnn_filters,
                    },
                )
            }
        )
        return spec

    @override(AlgorithmConfig)
    def build_env_to_module_connector(self, env=None, spaces=None, device=None):
        """RLlib's pipeline, then :class:`ModuleOrder`: modules act in the env's agent order."""
        from rllib_hatrpo.connectors.module_order import ModuleOrder

        pipeline = super().build_env_to_module_connector(env=env, spaces=spaces, device=device)
        pipeline.append(ModuleOrder())
        return pipeline

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        from rllib_hatrpo.torch.hatrpo_torch_learner import HATRPOTorchLearner

        return HATRPOTorchLearner

    @override(AlgorithmConfig)
    def validate(self) -> None:
        """Rejects values HATRPO cannot use, naming the field and the allowed range."""
        if self.env is not None and not self.is_multi_agent:
            from rllib_hatrpo.env_probe import probe_env

            agents = probe_env(self.env, self.env_config).agents
            self.multi_agent(policies=list(agents), policy_mapping_fn=agent_to_module)
        super().validate()
        validate_hatrpo_config(self)
        if self.env is not None:
            self._order_policies_like_agents()

    def _order_policies_like_agents(self) -> None:
        """Puts ``policies`` into the env's agent order (``possible_agents``).

        The learner sweeps its modules in this order: it fixes which agent each draw of the
        order RNG picks, the kkt tie-breaks and the order of initialisation, so one seed gives
        one run. A ``set`` of module IDs would order them by ``PYTHONHASHSEED`` instead.
        """
        from rllib_hatrpo.env_probe import probe_env

        agents = probe_env(self.env, self.env_config).agents
        ordered = [self.policy_mapping_fn(agent, None) for agent in agents]
        ordered += sorted(set(self.policies) - set(ordered))  # modules no agent maps to
        self.policies = {mid: self.policies[mid] for mid in ordered}


class HATRPO(Algorithm):
    """Heterogeneous-agent TRPO with a joint KL budget (see the module docstring)."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> HATRPOConfig:
        return HATRPOConfig()

    @override(Algorithm)
    def training_step(self) -> None:
        """Sample → critic, allocation and sequential TRPO on the learner → sync actor weights."""
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = self._sample()
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                **self._training_data(episodes),
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                },
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            # Weights come from learner 0; with several learners all of them are identical
            # (all-reduced update, replica check in the learner).
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=sorted(self.config.policies),
                inference_only=True,
            )

    def compute_state_values(self, states: Any) -> Any:
        """V(s) of the learner-only central critic, in reward units (the env's team return).

        The critic lives on the learners only (``get_module`` returns the EnvRunners' actors),
        so this asks learner 0. From a checkpoint:
        ``HATRPO.from_checkpoint(path).compute_state_values(states)``.

        Args:
            states: Global states, shape ``[N, *state_space.shape]`` (e.g. the
                ``info[agent]["global_state"]`` of env steps, stacked).

        Returns:
            A float32 numpy array of shape ``[N]``.

        Raises:
            ValueError: ``states`` does not have the shape of the env's ``state_space``.
        """
        results = self.learner_group.foreach_learner(
            lambda learner: learner.compute_state_values(states)
        )
        return next(iter(results)).get()

    def _sample(self) -> tuple[list, list]:
        """One iteration's episodes; an attempt that returned no env step is repeated.

        RLlib's ``synchronous_parallel_sample`` returns nothing when every EnvRunner missed
        ``sample_timeout_s`` (a busy machine, slow envs); such an iteration must not be
        counted as training, so sampling is retried up to ``MAX_EMPTY_SAMPLE_ATTEMPTS`` times.

        Raises:
            RuntimeError: No attempt sampled anything.
        """
        for attempt in range(1, MAX_EMPTY_SAMPLE_ATTEMPTS + 1):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.total_train_batch_size,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
            if any(len(episode) for episode in episodes):
                return episodes, env_runner_results
            logger.warning(
                "HATRPO: sampling returned no env step within sample_timeout_s=%s "
                "(attempt %d of %d); sampling again.",
                self.config.sample_timeout_s,
                attempt,
                MAX_EMPTY_SAMPLE_ATTEMPTS,
            )
        raise RuntimeError(
            f"No env step was sampled in {MAX_EMPTY_SAMPLE_ATTEMPTS} attempts of "
            f"env_runners(sample_timeout_s={self.config.sample_timeout_s}) each. Raise "
            "sample_timeout_s, lower training(train_batch_size_per_learner=...), or add "
            "EnvRunners (env_runners(num_env_runners=...))."
        )

    def _training_data(self, episodes: list) -> dict[str, Any]:
        """``learner_group.update`` arguments: the episodes, or one whole-chunk shard each.

        RLlib's own sharding cuts episodes to equal lengths, and a cut-off slice loses its
        infos (the global state the critic reads) and gains an artificial truncation. Here
        each learner gets whole chunks instead (one object ref per learner, which
        ``LearnerGroup.update`` hands out one each); the shards may differ in size, which the
        learners' all-reduced sums and counts account for exactly.
        """
        num_learners = self.config.num_learners
        if num_learners <= 1:
            return {"episodes": episodes}
        shards = balanced_shards(episodes, num_learners)
        return {"episodes_refs": [ray.put(shard) for shard in shards]}
