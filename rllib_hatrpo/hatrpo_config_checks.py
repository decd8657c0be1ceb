"""``HATRPOConfig.validate`` checks: each error names the field, the allowed range and the fix."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_hatrpo.default_hatrpo_rl_module import cnn_output_shape
from rllib_hatrpo.input_normalization import validate_input_normalization

_SUPPORTED_ACTIONS = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete)
_CNN_FILTERS_FIELD = "training(cnn_filters=...)"
#: An image larger than any kernel: checks the form of ``cnn_filters`` alone.
_FORM_ONLY_IMAGE = (1 << 16, 1 << 16, 1)
_GIB = 1 << 30

#: Peak memory of one iteration over the bytes of its observations and global states, measured:
#: 7.9× (sampling + one update, 1000 and 2000 env steps of 2 agents with 128×128×3 uint8
#: images, their 128×128×6 channel stack as the state). The copies: the episodes (on the
#: EnvRunner; a second copy on the learner once they cross processes), the learner
#: connector's batch arrays, the critic's float32 copy of the state (4× a uint8 image), and the
#: networks' float32 inputs in the forward passes, scaled to [0, 1] and zero-padded by the CNN.
BATCH_COPIES = 8


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate_hatrpo_config(config: Any) -> None:
    """Raises ValueError on the first setting HATRPO cannot use."""
    _validate_numbers(config)
    _validate_flags_and_sizes(config)
    _validate_rllib_settings(config)
    if config.env is not None:
        _validate_env(config)
        _validate_images_and_memory(config)
    validate_input_normalization(config)
    from rllib_hatrpo.torch.sequential_trpo import validate_fvp_subsample

    validate_fvp_subsample(config)


def _validate_numbers(c: Any) -> None:
    from rllib_hatrpo.core.allocation import make_allocator

    _require(
        _number(c.kl_threshold) and c.kl_threshold > 0,
        f"training(kl_threshold=...) must be a finite number > 0, got {c.kl_threshold!r}.",
    )
    _require(
        c.total_kl_budget is None or (_number(c.total_kl_budget) and c.total_kl_budget > 0),
        "training(total_kl_budget=...) must be None (n · kl_threshold) or a finite number "
        f"> 0, got {c.total_kl_budget!r}.",
    )
    try:
        make_allocator(c.kl_allocator, c.kl_allocator_config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"training(kl_allocator=..., kl_allocator_config=...): {err}") from err
    for name in ("cg_iters", "line_search_steps", "critic_epochs", "critic_num_minibatches"):
        value = getattr(c, name)
        _require(
            _integer(value) and value >= 1,
            f"training({name}=...) must be an integer >= 1, got {value!r}.",
        )
    for name in ("cg_residual_tol", "fvp_damping", "accept_ratio"):
        value = getattr(c, name)
        _require(
            _number(value) and value >= 0, f"training({name}=...) must be >= 0, got {value!r}."
        )
    for name in ("critic_lr", "critic_optimizer_eps"):
        value = getattr(c, name)
        _require(_number(value) and value > 0, f"training({name}=...) must be > 0, got {value!r}.")
    _require(
        _number(c.backtrack_coeff) and 0 < c.backtrack_coeff < 1,
        f"training(backtrack_coeff=...) must be in (0, 1), got {c.backtrack_coeff!r}.",
    )
    _require(
        _number(c.gamma) and 0 < c.gamma <= 1,
        f"training(gamma=...) must be in (0, 1], got {c.gamma!r}.",
    )
    _require(
        _number(c.lambda_) and 0 <= c.lambda_ <= 1,
        f"training(lambda_=...) must be in [0, 1], got {c.lambda_!r}.",
    )
    for name in ("value_clip_param", "huber_delta"):
        value = getattr(c, name)
        _require(
            value is None or (_number(value) and value > 0),
            f"training({name}=...) must be None or > 0, got {value!r}.",
        )


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_flags_and_sizes(c: Any) -> None:
    """Booleans are bools, sizes positive integers, the rest of the model fields in range."""
    _require(
        isinstance(c.use_value_norm, bool),
        f"training(use_value_norm=...) must be True or False, got {c.use_value_norm!r}.",
    )
    _require(
        _number(c.initial_log_std),
        f"training(initial_log_std=...) must be a finite number (the log standard deviation "
        f"of Gaussian actors, e.g. -1.0), got {c.initial_log_std!r}.",
    )
    for name in ("actor_hidden_sizes", "critic_hidden_sizes"):
        value = getattr(c, name)
        _require(
            isinstance(value, (list, tuple)) and all(_integer(v) and v > 0 for v in value),
            f"training({name}=...) must be a list of positive integers, got {value!r}.",
        )
    _require(
        c.activation in ("relu", "tanh"),
        f"training(activation=...) must be 'relu' or 'tanh', got {c.activation!r}.",
    )
    cnn_output_shape(_FORM_ONLY_IMAGE, c.cnn_filters, _CNN_FILTERS_FIELD)
    _require(
        c.max_batch_memory_gib is None
        or (_number(c.max_batch_memory_gib) and c.max_batch_memory_gib > 0),
        "training(max_batch_memory_gib=...) must be None (no check) or a number of GiB > 0, "
        f"got {c.max_batch_memory_gib!r}.",
    )
    _require(
        _integer(c.train_batch_size_per_learner) and c.train_batch_size_per_learner >= 1,
        "training(train_batch_size_per_learner=...) must be an integer >= 1 (env steps per "
        f"iteration), got {c.train_batch_size_per_learner!r}.",
    )


def _validate_rllib_settings(c: Any) -> None:
    _require(
        c.enable_rl_module_and_learner and c.enable_env_runner_and_connector_v2,
        "HATRPO runs on RLlib's new API stack only: remove api_stack(...) overrides.",
    )
    _require(
        c.num_epochs == 1 and c.minibatch_size is None,
        "HATRPO takes one full-batch trust-region step per iteration: leave "
        f"training(num_epochs=...) at 1 and minibatch_size at None (got {c.num_epochs!r}, "
        f"{c.minibatch_size!r}); the critic's passes are training(critic_epochs=..., "
        "critic_num_minibatches=...).",
    )
    # HATRPO.training_step gives each learner whole episode chunks (one per env at least).
    chunks = max(c.num_env_runners, 1) * c.num_envs_per_env_runner
    _require(
        c.num_learners <= chunks,
        f"learners(num_learners={c.num_learners}) needs at least one episode chunk per "
        f"learner, but an iteration samples from only {chunks} env(s) "
        "(env_runners(num_env_runners=..., num_envs_per_env_runner=...)): use more envs "
        "or fewer learners.",
    )
    _require(
        c.count_steps_by == "env_steps",
        "multi_agent(count_steps_by=...) must be 'env_steps': the batch is a number of env steps.",
    )


def _validate_env(c: Any) -> None:
    from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
    from rllib_hatrpo.env_probe import probe_env

    probe = probe_env(c.env, c.env_config)
    _require(
        isinstance(probe.state_space, gym.spaces.Box),
        f"config.env has no usable global state (state_space={probe.state_space!r}): the "
        "central critic needs a Box `state_space` and infos['global_state']. Wrap the env "
        "with rllib_hatrpo.envs.PettingZooEnv, which uses the env's state() or "
        "concatenates the agents' observations.",
    )
    modules: dict[str, str] = {}
    for agent in probe.agents:
        mid = c.policy_mapping_fn(agent, None)
        _require(
            mid != SHARED_CRITIC_ID, f"module ID {SHARED_CRITIC_ID!r} is reserved for the critic."
        )
        _require(
            mid in c.policies,
            f"policy_mapping_fn maps agent {agent!r} to {mid!r}, which is not in "
            f"multi_agent(policies=...) {sorted(c.policies)}.",
        )
        _require(
            mid not in modules,
            f"agents {modules.get(mid)!r} and {agent!r} share module {mid!r}: HATRPO updates "
            "agents one after another with their own trust regions and needs one module "
            "per agent (no parameter sharing). Map every agent to its own module.",
        )
        modules[mid] = agent
        action_space = probe.action_spaces[agent]
        _require(
            isinstance(action_space, _SUPPORTED_ACTIONS),
            f"agent {agent!r} has action space {action_space}; HATRPO supports Box, "
            "Discrete and MultiDiscrete.",
        )


def estimate_batch_memory(probe: Any, env_steps: int) -> int:
    """Peak bytes one iteration needs for its observations and global states: Σ (each agent's
    observation + the global state) × ``env_steps`` × ``BATCH_COPIES``, at the spaces' own
    dtypes (uint8 images one byte a pixel).

    Args:
        probe: The env's :class:`rllib_hatrpo.env_probe.EnvProbe`.
        env_steps: Env steps per iteration (the train batch).
    """
    per_step = sum(_space_bytes(space) for space in probe.network_inputs().values())
    return per_step * env_steps * BATCH_COPIES


def _space_bytes(space: gym.Space) -> int:
    """Bytes of one value of a ``Box`` (0 for other spaces: small, and not flattened here)."""
    if not isinstance(space, gym.spaces.Box):
        return 0
    return int(np.prod(space.shape)) * space.dtype.itemsize


def _validate_images_and_memory(c: Any) -> None:
    """``cnn_filters`` fits every image input; the batch's estimated memory fits the budget."""
    from rllib_hatrpo.env_probe import probe_env

    probe = probe_env(c.env, c.env_config)
    for name, space in probe.network_inputs().items():
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
            cnn_output_shape(space.shape, c.cnn_filters, f"{_CNN_FILTERS_FIELD} ({name})")
    if c.max_batch_memory_gib is None:
        return
    env_steps = c.train_batch_size_per_learner * max(1, c.num_learners)
    needed = estimate_batch_memory(probe, env_steps)
    budget = c.max_batch_memory_gib * _GIB
    if needed <= budget:
        return
    observations = Counter(
        f"{space.shape} {space.dtype}" for space in probe.observation_spaces.values()
    )
    per_agent = ", ".join(f"{n} × {shape}" for shape, n in observations.items())
    state = probe.state_space
    fits = int(budget // max(1, needed // env_steps)) // max(1, c.num_learners)
    raise ValueError(
        f"The train batch needs ≈ {needed / _GIB:.1f} GB (GiB) for its observations and "
        f"global states, more than training(max_batch_memory_gib={c.max_batch_memory_gib}): "
        f"per env step, per-agent observation shapes {per_agent} and a global state of "
        f"{getattr(state, 'shape', None)} {getattr(state, 'dtype', '')}, × {env_steps} env "
        f"steps (training(train_batch_size_per_learner={c.train_batch_size_per_learner})), × "
        f"{BATCH_COPIES} copies RLlib makes (episodes, batch, tensors). Fixes: preprocess the "
        "images with SuperSuit before PettingZooEnv, e.g. color_reduction_v0(env, 'B') (one "
        "channel), resize_v1(env, 32, 32), frame_stack_v1(env, 3), dtype_v0(env, np.uint8) "
        "(uint8 images take 1/4 of float32's memory), with PettingZooEnv(env, "
        "global_state='concat_obs') so the global state is the preprocessed observations; "
        f"or lower training(train_batch_size_per_learner=...) (≤ {fits} env steps fit); or "
        "raise training(max_batch_memory_gib=...) if the machine has the memory."
    )
