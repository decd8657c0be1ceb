"""Two learners (``num_learners=2``) give the single-learner update on the union batch.

MPE simple_speaker_listener: heterogeneous agents (speaker: obs Box(3,), Discrete(3);
listener: obs Box(11,), Discrete(5)). The learners get shards of very different sizes (about
60 and 180 env steps), so that any mean of per-shard means (instead of all-reduced sums and
counts) shows up as a difference to the single learner. Two negative controls prove that the
comparison can fail: with the all-reduce switched off, and with a critic loss averaged per
shard (what DDP's gradient averaging of per-shard mean losses would give).
"""

from __future__ import annotations

import copy
import sys

import pytest
import ray
import torch
from ray.rllib.core import COMPONENT_LEARNER

from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MPEEnv
from tests.helpers import make_config, runner_and_learner

pytestmark = pytest.mark.component

SPEAKER_LISTENER = (MPEEnv, {"scenario": "simple_speaker_listener"})
# Float32 sums in a different order: the 2-learner result may differ from the 1-learner one
# by rounding only (measured: ~1e-7). The negative controls differ by ~1e-3 or more.
UNION_ATOL = 1e-5
CONTROL_MIN_GAP = 1e-4


def _weights(learner) -> dict[str, torch.Tensor]:
    """Every module's parameters and buffers (e.g. the value-norm moments), by name."""
    return {
        f"{mid}/{name}": t.detach().clone()
        for mid in learner.module.keys()
        for name, t in learner.module[mid].unwrapped().state_dict().items()
    }


def _max_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ray_cluster(ray_session):
    """The session's Ray instance (logical CPUs for 2 + 2 learner actors)."""
    # The functions sent to the learner actors travel by value: those processes cannot
    # import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def two_learners(ray_cluster):
    """A 2-learner group, a local 1-learner reference, both started from the same state,
    and two unequal episode shards (sampled once, in-process)."""
    config = make_config(*SPEAKER_LISTENER, allocator="kkt", batch=240)
    runner, single = runner_and_learner(config)
    shards = [runner.sample(num_timesteps=60), runner.sample(num_timesteps=180)]
    group = (
        config.copy(copy_frozen=False)
        .learners(num_learners=2, num_cpus_per_learner=1)
        .build_learner_group(spaces=runner.get_spaces())
    )
    initial = group.get_state()[COMPONENT_LEARNER]
    refs = [ray.put(shard) for shard in shards]
    yield group, single, initial, shards, refs
    group.shutdown()


def _run_both(two_learners, allocator: str) -> tuple[list, dict, dict, list, dict]:
    """One update of the group (one shard per learner) and of the single learner (the union),
    from the same initial state; returns (group weights, single weights, initial weights,
    group results, single results)."""
    group, single, initial, shards, refs = two_learners

    def reset(learner):
        from rllib_hatrpo.core.allocation import make_allocator

        learner.allocator = make_allocator(allocator)
        learner.set_state(copy.deepcopy(initial))

    group.foreach_learner(reset)
    reset(single)
    before = _weights(single)
    # LearnerGroup.update hands out one object ref per learner: learner k trains on shard k.
    group_results = group.update(episodes_refs=refs, timesteps={})
    single_results = single.update(episodes=copy.deepcopy(shards[0] + shards[1]), timesteps={})
    group_weights = [r.get() for r in group.foreach_learner(lambda learner: _weights(learner))]
    return group_weights, _weights(single), before, group_results, single_results


def _peek(results, key, sub):
    return results[key][sub].peek()


@pytest.mark.parametrize("allocator", ["kkt", "greedy", "uniform"])
def test_two_learners_equal_one_learner_on_the_union_batch(two_learners, allocator):
    (w0, w1), w_single, before, group_results, single_results = _run_both(two_learners, allocator)
    learners_gap, union_gap = _max_gap(w0, w1), _max_gap(w0, w_single)
    print(f"{allocator}: learner 0 vs 1 {learners_gap:.3g}, 2 learners vs 1 {union_gap:.3g}")
    assert learners_gap == 0.0
    assert union_gap <= UNION_ATOL
    assert _max_gap(w_single, before) > 100 * UNION_ATOL  # the update did move the weights
    agents = ["speaker_0", "listener_0"]
    for result in group_results:
        assert _peek(result, "__all_modules__", "replica_max_abs_diff") == 0.0
        for mid in agents:  # the allocator saw the union's q_i and took the same decisions
            for key in ("update_rank", "line_search_accepted", "line_search_steps"):
                assert _peek(result, mid, key) == _peek(single_results, mid, key), (mid, key)
            for key in ("kl_budget", "kl", "natgrad_sq_norm", "surrogate_improvement"):
                expected = pytest.approx(_peek(single_results, mid, key), rel=1e-4, abs=1e-9)
                assert _peek(result, mid, key) == expected, (mid, key)


def test_negative_control_without_all_reduce_the_learners_drift_apart(two_learners):
    group = two_learners[0]

    def switch(enabled):
        def apply(learner):
            from rllib_hatrpo.torch import distributed

            distributed._set_reduce_enabled(enabled)

        return apply

    group.foreach_learner(switch(False))
    try:
        (w0, w1), w_single, *_ = _run_both(two_learners, "kkt")
    finally:
        group.foreach_learner(switch(True))
    learners_gap, union_gap = _max_gap(w0, w1), _max_gap(w0, w_single)
    print(f"no all-reduce: learner 0 vs 1 {learners_gap:.3g}, 2 learners vs 1 {union_gap:.3g}")
    assert learners_gap > CONTROL_MIN_GAP
    assert union_gap > CONTROL_MIN_GAP


def test_negative_control_per_shard_mean_critic_loss_is_caught(two_learners):
    """Learners that average per-shard mean losses stay identical to each other, yet differ
    from the single learner: only the comparison with the union batch catches this."""
    group = two_learners[0]

    def per_shard_critic_loss(enabled):
        def apply(learner):
            from rllib_hatrpo.core import value_loss

            original = getattr(value_loss.clipped_value_loss, "original", None)
            if original is not None:
                value_loss.clipped_value_loss = original
            if enabled:
                union_loss = value_loss.clipped_value_loss

                def per_shard(*args, reduce_fn=None, **kwargs):
                    return union_loss(*args, **kwargs)  # the local count as denominator

                per_shard.original = union_loss
                value_loss.clipped_value_loss = per_shard

        return apply

    group.foreach_learner(per_shard_critic_loss(True))
    try:
        (w0, w1), w_single, *_ = _run_both(two_learners, "kkt")
    finally:
        group.foreach_learner(per_shard_critic_loss(False))
    learners_gap = _max_gap(w0, w1)
    critic = [k for k in w0 if k.startswith(SHARED_CRITIC_ID)]
    critic_gap = max(float((w0[k] - w_single[k]).abs().max()) for k in critic)
    print(f"per-shard critic loss: learner 0 vs 1 {learners_gap:.3g}, critic vs 1 {critic_gap:.3g}")
    assert learners_gap == 0.0
    assert critic_gap > CONTROL_MIN_GAP


def test_training_step_with_two_learners_keeps_them_identical_and_syncs_runners(ray_cluster):
    """HATRPO.training_step shards whole episode chunks across the learners (RLlib's own
    sharding would cut episodes and lose the global state in their infos); the EnvRunner
    samples with learner 0's weights, which equal learner 1's. Critic minibatches on (each
    learner then issues the same number of collectives even with unequal shards)."""
    algo = (
        make_config(*SPEAKER_LISTENER, allocator="kkt", batch=150, critic_num_minibatches=2)
        .env_runners(num_envs_per_env_runner=3)
        .learners(num_learners=2, num_cpus_per_learner=1)
        .build_algo()
    )
    try:
        for _ in range(2):
            result = algo.train()
        assert result["learners"]["__all_modules__"]["replica_max_abs_diff"] == 0.0
        w0, w1 = (r.get() for r in algo.learner_group.foreach_learner(_weights))
        assert _max_gap(w0, w1) == 0.0
        runner = algo.env_runner  # the local EnvRunner (num_env_runners=0)
        for mid in ("speaker_0", "listener_0"):
            for name, value in runner.module[mid].state_dict().items():
                torch.testing.assert_close(value, w0[f"{mid}/{name}"], rtol=0, atol=0)
    finally:
        algo.stop()


def test_validate_needs_an_episode_chunk_per_learner():
    config = make_config(*SPEAKER_LISTENER).learners(num_learners=3)  # 2 envs sample
    with pytest.raises(ValueError, match=r"num_learners=3.*only 2 env"):
        config.validate()
    config.env_runners(num_envs_per_env_runner=3).validate()
