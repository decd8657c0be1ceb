"""``hatrpo train``'s progress (fraction, ETA, the bar) and its quiet start-up, without Ray."""

from __future__ import annotations

import io
import logging
import math
import warnings

import pytest

from rllib_hatrpo.cli.common import (
    KNOWN_HARMLESS_LOGS,
    QUIET_WORKER_HOOK,
    quiet_known_messages,
    quiet_runtime_env,
    quiet_worker_setup,
)
from rllib_hatrpo.cli.printing import RunProgress, eta_s, format_duration, seed_fraction
from rllib_hatrpo.experiments.loop import StopCriteria

AGENTS = ["agent_0", "agent_1"]


def _row(iteration, steps=0.0, seconds=0.0):
    return {
        "training_iteration": iteration,
        "env_steps": steps,
        "time_total_s": seconds,
        "time_this_iter_s": 1.0,
        "team_return": 0.5,
        "kl_total": 0.01,
        "total_kl_budget": 0.02,
        "agent_0/line_search_accepted": 1.0,
        "agent_1/line_search_accepted": 0.0,
    }


def test_seed_fraction_is_the_criterion_furthest_along():
    row = _row(2, steps=300, seconds=10)
    assert seed_fraction(row, StopCriteria(iters=10)) == pytest.approx(0.2)
    assert seed_fraction(row, StopCriteria(iters=10, timesteps=1000)) == pytest.approx(0.3)
    both = StopCriteria(iters=10, timesteps=1000, time_budget_s=20)
    assert seed_fraction(row, both) == pytest.approx(0.5)
    assert seed_fraction(_row(12), StopCriteria(iters=10)) == 1.0  # capped
    assert seed_fraction(None, StopCriteria(iters=10)) == 0.0
    assert seed_fraction(row, StopCriteria(team_return=1.0)) is None


def test_eta_from_the_pace_since_the_start():
    assert eta_s(0.25, 0.0, 10.0) == pytest.approx(30.0)
    assert eta_s(0.75, 0.5, 10.0) == pytest.approx(10.0)  # restored progress is not pace
    assert eta_s(0.5, 0.5, 10.0) is None and eta_s(0.2, 0.0, 0.0) is None
    assert format_duration(65.4) == "1:05" and format_duration(3723) == "1:02:03"
    assert format_duration(None) == "-" and format_duration(math.inf) == "-"


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_run_progress_over_seeds_prints_plain_lines_with_percentage_and_eta():
    out, clock = io.StringIO(), _Clock()
    progress = RunProgress(StopCriteria(iters=4), [0, 1], stream=out, clock=clock)
    clock.now += 10
    progress.iteration(0, _row(2), AGENTS)
    assert progress.fraction() == pytest.approx(0.25)
    assert progress.eta_s() == pytest.approx(30.0)
    progress.finished(0)  # e.g. a team return reached: the seed counts as done
    assert progress.fraction() == pytest.approx(0.5)
    progress.restored(1, [_row(2)])  # half of seed 1 from a checkpoint: not this pace
    assert progress.fraction() == pytest.approx(0.75)
    assert progress.eta_s() == pytest.approx(10.0 * 0.25 / 0.5)
    progress.close()
    text = out.getvalue()
    assert "\r" not in text and "[" not in text
    line = text.splitlines()[0]
    assert line.startswith("seed 0 | iter    2 |") and "accepted 1/2" in line
    assert line.endswith("|  25% ETA 0:30")


def test_run_progress_with_only_a_team_return_has_no_percentage():
    out = io.StringIO()
    progress = RunProgress(StopCriteria(team_return=1.0), [0], stream=out)
    progress.iteration(0, _row(1), AGENTS)
    assert progress.fraction() is None
    assert out.getvalue().rstrip().endswith("| ETA -")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_run_progress_on_a_terminal_redraws_one_bar_line():
    out, clock = _Terminal(), _Clock()
    progress = RunProgress(StopCriteria(iters=4), [0], stream=out, clock=clock)
    progress.starting(0)  # the bar shows while the seed's algorithm is built
    assert out.getvalue() == "\r\033[K[------------------------]   0% ETA - | seed 1/1"
    clock.now += 4
    progress.iteration(0, _row(1), AGENTS)
    progress.say("a note")
    progress.close()
    text = out.getvalue()
    assert "\r\033[K[######------------------]  25% ETA 0:12 | seed 1/1" in text
    # The lines stay, each printed over a cleared bar; the bar is gone at the end.
    assert "\r\033[Ka note\n" in text and text.endswith("\r\033[K")


@pytest.fixture
def recorded():
    """The records that reach a handler on each known logger (filters apply before it)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = {logging.getLogger(name) for name, _ in KNOWN_HARMLESS_LOGS}
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def test_quiet_known_messages_hides_only_the_named_messages(recorded):
    def log_all():
        for name, prefix in KNOWN_HARMLESS_LOGS:
            logging.getLogger(name).warning(prefix + " (and the rest)")
            logging.getLogger(name).error("a real error")
        warnings.warn(
            "\x1b[33mWARN: Overriding environment x-v0 already in registry.\x1b[0m", stacklevel=1
        )
        warnings.warn("another warning", stacklevel=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        show_again = quiet_known_messages()
        try:
            log_all()
        finally:
            show_again()
        assert [r.getMessage() for r in recorded] == ["a real error"] * len(KNOWN_HARMLESS_LOGS)
        assert [str(w.message) for w in caught] == ["another warning"]
        recorded.clear()
        log_all()  # undone: everything shows again
        assert len(recorded) == 2 * len(KNOWN_HARMLESS_LOGS) and len(caught) == 3


def test_quiet_runtime_env_keeps_the_earlier_worker_hook(monkeypatch):
    earlier = {"env_vars": {"A": "1"}, "worker_process_setup_hook": "math.fake_hook"}
    env = quiet_runtime_env(earlier)
    assert env["worker_process_setup_hook"] == QUIET_WORKER_HOOK
    assert env["env_vars"]["A"] == "1" and earlier["worker_process_setup_hook"] == "math.fake_hook"
    assert quiet_runtime_env(None)["worker_process_setup_hook"] == QUIET_WORKER_HOOK
    calls = []
    monkeypatch.setattr("math.fake_hook", lambda: calls.append(1), raising=False)
    for name, value in env["env_vars"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("rllib_hatrpo.cli.common.quiet_known_messages", lambda: calls.append(0))
    quiet_worker_setup()
    assert calls == [0, 1]
