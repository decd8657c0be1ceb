"""The files in cluster/: Ray's own schema for the `ray up` YAMLs, the KubeRay manifests'
structure, the runtime env, and one Ray version everywhere (the one pyproject.toml pins).

Nothing here reaches a network: the validations run with socket connections refused, so a
check that tried to call a cloud provider would fail rather than call it.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
import zipfile
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import ray
import yaml

from rllib_hatrpo.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
RAY_UP_FILES = ["aws.yaml", "local.yaml"]
KUBERAY_FILES = {"kuberay-rayjob.yaml": "RayJob", "kuberay-raycluster.yaml": "RayCluster"}
RESULTS_CLAIM = "hatrpo-runs"


def _load(name):
    return yaml.safe_load((CLUSTER / name).read_text())


def _load_one(name):
    (doc,) = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    return doc


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("a cluster-file check tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _prepare_and_validate(config):
    """What `ray up` checks before it contacts the provider (Ray 2.60)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# ----------------------------------------------------------------------------- ray up files


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_passes_rays_schema(name, no_network):
    prepared = _prepare_and_validate(_load(name))
    node_types = prepared["available_node_types"]
    assert prepared["head_node_type"] in node_types
    assert sum(t["max_workers"] for t in node_types.values()) >= 1
    for node_type in node_types.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"]
    # The setup commands reach every node type (prepare_config prepends them).
    setup = prepared["setup_commands"]
    assert prepared["head_setup_commands"][: len(setup)] == setup


def test_aws_file_has_head_and_cpu_worker_types(no_network):
    prepared = _prepare_and_validate(_load("aws.yaml"))
    head = prepared["head_node_type"]
    workers = {k: v for k, v in prepared["available_node_types"].items() if k != head}
    assert prepared["available_node_types"][head]["max_workers"] == 0
    assert prepared["available_node_types"][head]["resources"] == {"CPU": 0}
    assert len(workers) == 1
    (worker,) = workers.values()
    assert 1 <= worker["min_workers"] <= worker["max_workers"] <= prepared["max_workers"]


def _typo_top_level_key(config):
    config["setup_comands"] = config.pop("setup_commands")


def _workers_as_text(config):
    config["max_workers"] = "four"


def _worker_ips_not_a_list(config):
    config["provider"]["worker_ips"] = "192.0.2.11"


@pytest.mark.parametrize(
    "name, damage",
    [
        ("aws.yaml", _typo_top_level_key),
        ("aws.yaml", _workers_as_text),
        ("local.yaml", _worker_ips_not_a_list),
    ],
)
def test_ray_up_schema_rejects_a_broken_copy(name, damage, no_network):
    """Negative control: the validation above would notice a damaged file."""
    config = _load(name)
    damage(config)
    with pytest.raises(jsonschema.ValidationError):
        _prepare_and_validate(config)


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_file_uses_token_auth_and_a_private_dashboard(name):
    config = _load(name)
    head_start = config["head_start_ray_commands"][-1]
    worker_start = config["worker_start_ray_commands"][-1]
    assert "RAY_AUTH_MODE=token ray start --head " in head_start
    # Worker nodes never switch token auth on by themselves (ray start --address).
    assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in worker_start
    assert "--dashboard-host=127.0.0.1" in head_start
    # ... and in every shell on the nodes (ray attach / ray exec).
    assert any("export RAY_AUTH_MODE=token" in c for c in config["setup_commands"])
    everything = yaml.safe_dump(config)
    assert "0.0.0.0" not in everything and "8265" not in everything
    # Every node gets the token of the machine that runs `ray up`.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_ray_up_files_share_setup_and_start_commands():
    aws, local = _load("aws.yaml"), _load("local.yaml")
    shared = [
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
        "rsync_exclude",
    ]
    for key in shared:
        assert aws[key] == local[key], key
    setup = "\n".join(aws["setup_commands"])
    assert f'pip install "ray[default,rllib]=={ray.__version__}"' in setup
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup
    assert 'pip install -e "$HOME/rllib_hatrpo[mamujoco,mpe]"' in setup
    assert aws["file_mounts"]["~/rllib_hatrpo"] == "."


# ----------------------------------------------------------------------------- KubeRay


def _cluster_spec(doc):
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def _groups(spec):
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


@pytest.mark.parametrize("name, kind", KUBERAY_FILES.items())
def test_kuberay_manifest_structure(name, kind):
    doc = _load_one(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"] == {"mode": "token"}
    containers = [c for g in _groups(spec) for c in g["template"]["spec"]["containers"]]
    assert len({c["image"] for c in containers}) == 1, "one image for head and workers"
    for container in containers:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
    for group in _groups(spec):
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in head["template"]["spec"]["volumes"]]
    assert claims == [RESULTS_CLAIM]


def test_kuberay_storage_defines_the_results_claim():
    doc = _load_one("kuberay-storage.yaml")
    assert doc["kind"] == "PersistentVolumeClaim"
    assert doc["metadata"]["name"] == RESULTS_CLAIM


def test_rayjob_entrypoint_is_a_valid_hatrpo_train_writing_to_the_claim():
    from ray.runtime_env import RuntimeEnv

    doc = _load_one("kuberay-rayjob.yaml")
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["hatrpo", "train"]
    args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag
    mount = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    (volume_mount,) = mount["volumeMounts"]
    output = PurePosixPath(str(args.output))
    assert output.is_absolute()
    assert PurePosixPath(volume_mount["mountPath"]) in output.parents
    RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))


# ----------------------------------------------------------------------------- image, versions


def test_dockerfile_builds_on_the_pinned_ray_image():
    text = (CLUSTER / "Dockerfile").read_text()
    tag = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\S+)$", text, re.MULTILINE).group(1)
    assert re.fullmatch(rf"{re.escape(ray.__version__)}-py3\d+-cpu", tag), tag
    assert re.search(r"^FROM \$\{RAY_IMAGE\}$", text, re.MULTILINE)
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert 'pip install --no-cache-dir ".[mamujoco,mpe]"' in text


def test_dockerignore_keeps_what_pip_install_needs():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "results", "runs", ".ci-venv"} <= ignored
    assert not ignored & {"pyproject.toml", "README.md", "rllib_hatrpo", "cluster"}


def _pins(pattern, text):
    return set(re.findall(pattern, text))


def test_every_file_pins_the_ray_and_torch_of_the_package():
    """pyproject.toml's Ray pin = installed Ray = cluster files; one torch pin everywhere."""
    pyproject = (REPO / "pyproject.toml").read_text()
    assert _pins(r"ray\[[a-z,]+\]==([0-9.]+)", pyproject) == {ray.__version__}
    cluster_text = {p.name: p.read_text() for p in CLUSTER.iterdir() if p.is_file()}
    ray_pins = set()
    for text in cluster_text.values():
        ray_pins |= _pins(r"ray\[[a-z,]+\]==([0-9.]+)", text)
        ray_pins |= _pins(r"rayproject/ray:([0-9.]+)-", text)
        ray_pins |= _pins(r'rayVersion: "([0-9.]+)"', text)
    assert ray_pins == {ray.__version__}
    torch_pins = set()
    for name in ("aws.yaml", "local.yaml", "Dockerfile"):
        torch_pins |= _pins(r"torch==([0-9.]+)", cluster_text[name])
    assert torch_pins == _pins(r"torch==([0-9.]+)", (REPO / "README.md").read_text())
    assert len(torch_pins) == 1


# ----------------------------------------------------------------------------- runtime env


def test_runtime_env_file_is_accepted_by_ray(monkeypatch):
    from ray.runtime_env import RuntimeEnv

    data = _load("runtime_env.yaml")
    # RuntimeEnv keeps unknown keys for plugins, so a misspelt field would pass silently.
    assert set(data) <= RuntimeEnv.known_fields
    monkeypatch.chdir(REPO)  # working_dir "." is resolved where `ray job submit` runs
    env = RuntimeEnv(**data)
    assert env["working_dir"] == "."
    assert env["env_vars"]["OMP_NUM_THREADS"] == "1"
    # Negative control: Ray does check the types (env_vars must be strings).
    with pytest.raises(TypeError, match="env_vars"):
        RuntimeEnv(**{**data, "env_vars": {"OMP_NUM_THREADS": 1}})


def test_runtime_env_excludes_leave_local_runs_out_of_the_upload(tmp_path):
    """Packs a small tree with Ray's own packer; .gitignore is off to test the excludes alone."""
    from ray._private.runtime_env.packaging import _zip_files

    repo = tmp_path / "repo"
    files = [
        "README.md",
        "rllib_hatrpo/cli/main.py",
        "rllib_hatrpo/__pycache__/cli.cpython-311.pyc",
        "rllib_hatrpo.egg-info/PKG-INFO",
        "results/throughput/summary.md",
        "runs/mpe/seed_0/metrics.csv",
        ".git/HEAD",
        ".ci-venv/bin/python",
    ]
    for name in files:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    archive = tmp_path / "upload.zip"
    excludes = _load("runtime_env.yaml")["excludes"]
    _zip_files(str(repo), excludes, str(archive), include_gitignore=False)
    with zipfile.ZipFile(archive) as packed:
        uploaded = {n for n in packed.namelist() if not n.endswith("/")}
    assert uploaded == {"README.md", "rllib_hatrpo/cli/main.py"}
