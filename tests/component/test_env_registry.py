"""Adding an env suite is one registration: ``hatrpo train --env <it>`` and its options work.

Before, the command line kept its own tables of each env's flags, default config and batch
size, so a suite registered in ``rllib_hatrpo.envs`` alone stopped ``hatrpo train`` with a
``KeyError``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rllib_hatrpo.cli.main import build_parser, main
from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env
from rllib_hatrpo.envs import ENV_SUITES, EnvOption, EnvSuite, register_env_suite

pytestmark = pytest.mark.component

NAME = "tiny_matrix"


@pytest.fixture
def tiny_matrix():
    """The matrix game under a new name, with a new option ``--penalty-k``."""
    suite = register_env_suite(
        EnvSuite(
            NAME,
            "rllib_hatrpo.envs.toy_games:MatrixGameEnv",
            options=(
                EnvOption("scenario", "the game", key="game"),
                EnvOption("penalty_k", "the penalty game's k", value_type=int, minimum=-1000),
            ),
            default_config={"game": "climbing"},
            default_train_batch=32,
        )
    )
    yield suite
    ENV_SUITES.pop(NAME)


def test_a_registered_suite_resolves_with_its_options_and_defaults(tiny_matrix):
    args = build_parser().parse_args(["train", "--env", NAME, "--penalty-k", "-50"])
    env, env_config, label = resolve_env(args)
    assert env is tiny_matrix.load() and label == NAME
    assert env_config == {"game": "climbing", "penalty_k": -50}
    config = build_config(args, env, env_config, resolve_allocator(args)[0])
    assert config.train_batch_size_per_learner == 32
    help_text = build_parser().parse_args(["train"]).parser.format_help()
    assert "--penalty-k" in help_text and f"{NAME}: the penalty game's k" in help_text


def test_a_registered_suite_trains(ray_session, tiny_matrix, tmp_path, capsys):
    argv = ["train", "--env", NAME, "--scenario", "penalty", "--num-env-runners", "0"]
    assert main([*argv, "--stop-iters", "1", "--output", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "seed_0" / "metrics.csv")
    assert frame["env_steps"].tolist() == [32]
    record = json.loads((tmp_path / "args.json").read_text())
    assert record["env_config"] == {"game": "penalty"}


def test_an_option_the_suite_does_not_offer_names_its_flags(tiny_matrix, tmp_path, capsys):
    assert main(["train", "--env", NAME, "--agent-conf", "2x3", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "argument --agent-conf: --env tiny_matrix has no such setting" in err
    assert "--scenario, --penalty-k" in err


def test_unregistered_name_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--env", NAME, "--output", str(tmp_path)]) == 2
    assert "argument --env: unknown env 'tiny_matrix'" in capsys.readouterr().err
