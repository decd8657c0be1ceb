"""`ray job submit` of `hatrpo train` to a real Ray head started by this test (slow).

The head belongs to this test alone: `ray start --head --block` in a new session, on free
ports (never Ray's defaults 6379/8265/10001/52365), with a private temp dir and RAY_TMPDIR,
and token authentication with a token of its own (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH),
set the way cluster/README.md sets it. It is stopped by signalling that `ray start` process
and, for stragglers, only processes of its process group or carrying its private RAY_TMPDIR;
never with `ray stop`, which would stop every Ray instance on the machine.

Ray turns a loopback --node-ip-address into the machine's address
(`resolve_ip_for_localhost` in ray/_private/services.py), so GCS and raylet listen there;
the dashboard and job server listen on 127.0.0.1, and the token guards both.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cluster.ray_processes import free_ports, reap

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEAD_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 600

try:
    import ray.dashboard.optional_deps  # noqa: F401  (ray[default]: dashboard and job server)
except ImportError:
    pytest.skip("ray[default] is not installed: no job server", allow_module_level=True)
if not sys.platform.startswith("linux"):
    pytest.skip("finds its own processes through /proc", allow_module_level=True)


def _ray_cli():
    ray = BIN / "ray"
    return [str(ray)] if ray.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


@dataclass
class Head:
    dashboard_url: str
    token: str
    client_env: dict
    log: Path
    marker: bytes  # RAY_TMPDIR=<private dir>, in the environment of every process it starts
    pgid: int = 0
    stragglers: tuple = ()  # still running 10 s after ray start stopped: SIGKILLed


def _get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return r.status


def _wait_until_ready(process, head):
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited ({process.returncode}):\n{head.log.read_text()}")
        with contextlib.suppress(OSError):
            if _get(f"{head.dashboard_url}/api/jobs/", head.token) == 200:
                return
        time.sleep(1)
    raise TimeoutError(f"no job server after {HEAD_START_TIMEOUT_S} s:\n{head.log.read_text()}")


@contextlib.contextmanager
def private_head(workdir, num_cpus=2):
    """A token-auth Ray head of our own; yields a Head, stops exactly what it started."""
    token = secrets.token_hex(32)
    token_path = workdir / "auth_token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    gcs, dashboard, *other = free_ports(9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        RAY_TMPDIR=str(workdir),  # also keeps Ray's "current cluster" file private
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the job finds this `hatrpo`
    )
    flags = dict(
        zip(
            [
                "--ray-client-server-port",
                "--dashboard-agent-listen-port",
                "--dashboard-agent-grpc-port",
                "--runtime-env-agent-port",
                "--metrics-export-port",
                "--node-manager-port",
                "--object-manager-port",
            ],
            map(str, other),
            strict=True,
        )
    )
    command = [
        *_ray_cli(),
        "start",
        "--head",
        "--block",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--include-dashboard=true",
        f"--num-cpus={num_cpus}",
        f"--temp-dir={workdir / 'ray'}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in flags.items()),
    ]
    url = f"http://127.0.0.1:{dashboard}"
    client_env = {**env, "RAY_ADDRESS": url}  # only the submitting client gets RAY_ADDRESS
    head = Head(url, token, client_env, workdir / "head.log", f"RAY_TMPDIR={workdir}".encode())
    with head.log.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    head.pgid = process.pid  # a session leader leads its own process group
    try:
        _wait_until_ready(process, head)
        yield head
    finally:
        # ray start's SIGTERM handler stops the processes of this node (and only those).
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
        head.stragglers = reap(head.marker, head.pgid, timeout_s=10)
        if process.poll() is None:
            process.kill()
            process.wait()


def _cli(head, *args, timeout=120):
    return subprocess.run(
        [*_ray_cli(), "job", *args],
        cwd=REPO,
        env=head.client_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_for_job(head, submission_id):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(
        head.dashboard_url, headers={"Authorization": f"Bearer {head.token}"}
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := client.get_job_status(submission_id)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            break
        time.sleep(3)
    return status, client.get_job_logs(submission_id)


@pytest.fixture
def workdir(monkeypatch):
    # The in-process job client must use the address it is given, not the environment's.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    # Short path under /tmp: Ray's Unix sockets live below the temp dir (~107-byte limit).
    path = Path(tempfile.mkdtemp(prefix="hatrpo-job-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ray_job_submit_trains_and_writes_checkpoint_and_metrics(workdir):
    from ray.job_submission import JobStatus

    output = workdir / "run"
    submission_id = f"hatrpo-test-{secrets.token_hex(4)}"
    with private_head(workdir) as head:
        # Token authentication is on: no token → 401, a wrong one → 403.
        for token, code in [(None, 401), ("0" * 64, 403)]:
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(f"{head.dashboard_url}/api/jobs/", token)
            assert refused.value.code == code
        submitted = _cli(
            head,
            "submit",
            "--no-wait",
            f"--submission-id={submission_id}",
            "--runtime-env=cluster/runtime_env.yaml",
            "--",
            *"hatrpo train --env mpe --num-env-runners 1 --num-envs-per-env-runner 2".split(),
            *"--train-batch-size 400 --stop-iters 2 --hidden-sizes 32,32 --seeds 0".split(),
            f"--output={output}",
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        status, logs = _wait_for_job(head, submission_id)
        assert status == JobStatus.SUCCEEDED, logs
        described = _cli(head, "status", submission_id)
        assert described.returncode == 0, described.stdout + described.stderr
        assert f"Job '{submission_id}' succeeded" in described.stdout
        listed = _cli(head, "list")
        assert submission_id in listed.stdout, listed.stdout + listed.stderr
    assert not head.stragglers, "processes of the test's head outlived ray start by 10 s"

    assert "seed 0: stopped at 2 iterations" in logs
    run = output / "seed_0"
    assert (run / "checkpoint" / "rllib_checkpoint.json").is_file()
    frame = pd.read_csv(run / "metrics.csv")
    assert list(frame["training_iteration"]) == [1, 2]
    assert list(frame["env_steps"]) == [400, 800]
    assert np.isfinite(frame["kl_total"]).all()
    assert json.loads((output / "args.json").read_text())["flags"]["stop_iters"] == 2
