"""The learner update on CUDA equals the CPU update on the same batch (skipped without a GPU)."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MaMuJoCoEnv
from tests.helpers import make_config, runner_and_learner

pytestmark = [
    pytest.mark.component,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _weights(learner) -> dict[str, torch.Tensor]:
    return {
        f"{mid}/{name}": value.detach().double().cpu()
        for mid in learner.module.keys()
        for name, value in learner.module[mid].state_dict().items()
        if value.is_floating_point()
    }


@pytest.mark.parametrize("allocator", ["uniform", "kkt"])
def test_cuda_update_matches_the_cpu_update(allocator):
    config = make_config(
        MaMuJoCoEnv, {"scenario": "HalfCheetah", "agent_conf": "2x3"}, allocator=allocator
    )
    runner, cpu = runner_and_learner(config)
    episodes = runner.sample(num_timesteps=400)
    gpu = (
        config.copy(copy_frozen=False)
        .learners(num_gpus_per_learner=1)
        .build_learner(spaces=runner.get_spaces())
    )
    gpu.set_state(cpu.get_state())  # same weights, optimizer, order RNG and allocator state
    assert next(gpu.module[SHARED_CRITIC_ID].parameters()).is_cuda

    times = {}
    results = {}
    for name, learner in (("cpu", cpu), ("cuda", gpu)):
        start = time.perf_counter()
        results[name] = learner.update(episodes=copy.deepcopy(episodes), timesteps={})
        times[name] = time.perf_counter() - start
    print(f"update time cuda/cpu ({allocator}): {times['cuda'] / times['cpu']:.2f}")

    for mid in ("agent_0", "agent_1"):
        accepted = [results[n][mid]["line_search_accepted"].peek() for n in ("cpu", "cuda")]
        assert accepted[0] == accepted[1], mid
    cpu_w, gpu_w = _weights(cpu), _weights(gpu)
    assert cpu_w.keys() == gpu_w.keys()
    for key in cpu_w:
        torch.testing.assert_close(gpu_w[key], cpu_w[key], rtol=1e-3, atol=1e-4, msg=key)
