"""HATRPO across the nodes of a Ray cluster simulated on this machine (`ray.cluster_utils`).

A head and two worker nodes with 1 CPU each; two EnvRunners need 1 CPU each, so no node can
hold both and they must run on two different nodes while the learner stays in this (driver)
process. The cluster is this test's own: RAY_TMPDIR points to a private directory (Cluster
writes its address to `<RAY_TMPDIR>/ray/ray_current_cluster`, where a bare `ray.init()`
elsewhere on the machine would otherwise find and join it), ports are picked by the OS, there
is no dashboard, and `Cluster.shutdown()` stops exactly the nodes it started.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MPEEnv
from rllib_hatrpo.metrics import KL, KL_BUDGET, KL_TOTAL
from tests.cluster.ray_processes import free_ports, reap
from tests.helpers import make_config

pytestmark = pytest.mark.slow

NODE_ARGS = {
    "num_cpus": 1,
    "include_dashboard": False,
    "dashboard_agent_listen_port": None,  # OS-picked, not 52365, which another instance may hold
    "object_store_memory": 100 * 1024**2,
}


@pytest.fixture
def private_ray_tmpdir(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("finds its own processes through /proc")
    path = Path(tempfile.mkdtemp(prefix="hatrpo-nodes-", dir="/tmp"))  # short socket paths
    monkeypatch.setenv("RAY_TMPDIR", str(path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield path
    reap(f"RAY_TMPDIR={path}".encode(), timeout_s=0)  # after a failure: whatever is left
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def three_node_cluster():
    if ray.is_initialized():  # a Ray session left behind by an earlier test module
        ray.shutdown()
    # The head always starts Ray's API server, by default on 8265: give it a free port instead.
    (api_server_port,) = free_ports(1)
    head_args = {**NODE_ARGS, "dashboard_port": api_server_port}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        for _ in range(2):
            cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _runner_node_ids(algo):
    return algo.env_runner_group.foreach_env_runner(
        lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
    )


def test_env_runners_on_two_nodes_and_training_proceeds(private_ray_tmpdir):
    config = make_config(MPEEnv, {"scenario": "simple_spread_v3"}, batch=400)
    config = config.env_runners(num_env_runners=2, num_envs_per_env_runner=2)
    with three_node_cluster() as cluster:
        assert (private_ray_tmpdir / "ray" / "ray_current_cluster").is_file()
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert len(nodes) == 3
        algo = config.build_algo()
        try:
            agents = sorted(algo.config.policies)
            runner_nodes = _runner_node_ids(algo)
            results = [algo.train() for _ in range(2)]
        finally:
            algo.stop()
        assert cluster.head_node.node_id in nodes

    assert len(runner_nodes) == 2 and len(set(runner_nodes)) == 2, runner_nodes
    assert set(runner_nodes) <= nodes
    steps = [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in results]
    assert 400 <= steps[0] < steps[1], steps
    last = results[-1]["learners"]
    assert math.isfinite(last["__all_modules__"][KL_TOTAL])
    assert agents == ["agent_0", "agent_1", "agent_2"]
    for agent in agents:
        assert math.isfinite(last[agent][KL]) and last[agent][KL_BUDGET] > 0
    assert math.isfinite(last[SHARED_CRITIC_ID]["total_loss"])
    # Workers exit shortly after their raylet; anything still running after 30 s is killed.
    stragglers = reap(f"RAY_TMPDIR={private_ray_tmpdir}".encode())
    assert not stragglers, "processes of the simulated cluster outlived it by 30 s"
