"""Optuna study helpers: knee point, resume after a crash, failing and pruned trials, shared PostgreSQL studies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import genlab
import genlab.tune.study as study_module
from genlab.errors import GenlabError
from genlab.tune import (
    counted_trials,
    default_storage,
    fail_stale_trials,
    knee_point,
    open_study,
    optimize,
    pareto_front,
    plot_history,
    plot_pareto,
    report_intermediate,
    study_knee,
    summarize,
    worker_info,
    write_summary,
)

REPO = Path(genlab.__file__).resolve().parents[1]

#: A worker process: opens the toy study described by the JSON in argv[1] and runs its trials.
WORKER = """
import json, sys, time
from pathlib import Path
from genlab.tune import open_study, optimize, report_intermediate

args = json.loads(sys.argv[1])
study = open_study(Path(args["dir"]), args["name"], ["minimize"], storage=args.get("storage"),
                   worker_index=args["worker"], join=args.get("join", False), pruner=args.get("pruner", "median"))

if args.get("barrier"):
    # Wait for the other workers, so that their trials really run at the same time.
    barrier = Path(args["barrier"])
    (barrier / str(args["worker"])).touch()
    while len(list(barrier.iterdir())) < args["n_workers"]:
        time.sleep(0.01)

def objective(trial):
    x = trial.suggest_float("x", -3.0, 3.0)
    if trial.number == args.get("hang_at"):
        Path(args["marker"]).write_text(str(trial.number))
        time.sleep(600)
    for step in range(3):
        report_intermediate(trial, step, (x - 1.0) ** 2 + 1.0 / (step + 1))
        time.sleep(args.get("sleep", 0.0))
    return (x - 1.0) ** 2

optimize(study, objective, n_trials=args["n_trials"])
"""


@pytest.fixture(autouse=True)
def quiet_optuna():
    """Keep Optuna's per-trial log lines out of the test output."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(verbosity)


def spawn_worker(**args) -> subprocess.Popen:
    """Start WORKER in a separate Python process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def quadratic(trial: optuna.Trial) -> float:
    """Toy objective: (x - 1)^2, reporting three intermediate values."""
    x = trial.suggest_float("x", -3.0, 3.0)
    for step in range(3):
        report_intermediate(trial, step, (x - 1.0) ** 2 + 1.0 / (step + 1))
    return (x - 1.0) ** 2


def point(number: int, *values: float) -> optuna.trial.FrozenTrial:
    """A hand-made complete trial with the given number and objective values."""
    trial = create_trial(values=list(values))
    trial.number = number
    return trial


def states(study: optuna.Study) -> list[tuple[int, str]]:
    """(number, state) of every trial, by number."""
    return [(t.number, t.state.name) for t in sorted(study.trials, key=lambda t: t.number)]


# --- knee point -----------------------------------------------------------------------------------------------


def scaled_front(pairs: list[tuple[float, float]], first: int = 0) -> list[optuna.trial.FrozenTrial]:
    """Trials on FID- and ACD-like scales (FID 10..100, ACD 0..0.5) from points in the unit square."""
    return [point(first + i, 10 + 90 * a, 0.5 * b) for i, (a, b) in enumerate(pairs)]


def test_knee_point_picks_the_bend_of_a_convex_front():
    front = scaled_front([(0, 1), (0.1, 0.4), (0.2, 0.2), (0.5, 0.1), (1, 0)])
    assert knee_point(front).number == 2
    assert knee_point(list(reversed(front))).number == 2


def test_knee_point_respects_maximised_objectives():
    front = [point(i, a, -b) for i, (a, b) in enumerate([(0, 1), (0.1, 0.4), (0.2, 0.2), (0.5, 0.1), (1, 0)])]
    assert knee_point(front, ["minimize", "maximize"]).number == 2


def test_knee_point_small_and_degenerate_fronts():
    assert knee_point([point(7, 3.0, 4.0)]).number == 7
    # Two points are symmetric after scaling: the tie goes to the lower trial number.
    assert knee_point([point(9, 10.0, 0.1), point(4, 50.0, 0.05)]).number == 4
    # All points equal: no line to measure against.
    assert knee_point([point(5, 1.0, 1.0), point(3, 1.0, 1.0), point(8, 1.0, 1.0)]).number == 3
    # Concave front (nothing below the extremes' line): closest to utopia, tie to the lower number.
    assert knee_point(scaled_front([(0, 1), (0.8, 0.8), (1, 0)], first=10)).number == 10
    with pytest.raises(ValueError):
        knee_point([])


def test_knee_point_ties_go_to_the_lowest_trial_number():
    pairs = [(0, 1), (0.25, 0.4), (0.4, 0.25), (1, 0)]
    front = [point(n, a, b) for n, (a, b) in zip([0, 6, 5, 9], pairs, strict=True)]
    assert knee_point(front).number == 5


def test_knee_point_single_objective_is_the_minimum():
    assert knee_point([point(0, 3.0), point(1, 1.0), point(2, 1.0)]).number == 1


# --- open_study ---------------------------------------------------------------------------------------------------


def test_open_study_refuses_an_existing_name_and_a_missing_resume(tmp_path):
    study_dir = tmp_path / "study"
    study = open_study(study_dir, "toy", ["minimize"], seed=3)
    optimize(study, quadratic, n_trials=1)
    assert default_storage(study_dir) == f"sqlite:///{(study_dir / 'study.db').resolve()}"
    record = json.loads((study_dir / "study.json").read_text())
    assert record["name"] == "toy" and record["directions"] == ["minimize"] and record["seed"] == 3

    with pytest.raises(GenlabError, match=r"already exists .* 1 trial.*--resume"):
        open_study(study_dir, "toy", ["minimize"])
    with pytest.raises(GenlabError, match="already holds study 'toy'"):
        open_study(study_dir, "other", ["minimize"])
    with pytest.raises(GenlabError, match="No objective directions"):
        open_study(tmp_path / "new", "fresh")
    with pytest.raises(GenlabError, match="Nothing to resume"):
        open_study(tmp_path / "empty", "toy", ["minimize"], resume=True)
    with pytest.raises(GenlabError, match="optimises"):
        open_study(study_dir, "toy", ["minimize", "minimize"], resume=True)

    resumed = open_study(study_dir, resume=True)
    assert resumed.study_name == "toy" and len(resumed.trials) == 1
    assert json.loads((study_dir / "study.json").read_text())["seed"] == 3


def test_join_loads_a_study_another_worker_created_a_moment_ago(tmp_path, monkeypatch):
    first = open_study(tmp_path / "a", "race", ["minimize"], storage=default_storage(tmp_path / "shared"))
    optimize(first, quadratic, n_trials=1)
    # Pretend the study did not exist yet when this worker looked, as when two workers start at once.
    monkeypatch.setattr(study_module, "_existing_trials", lambda storage, name: None)
    joined = open_study(tmp_path / "b", "race", ["minimize"], storage=default_storage(tmp_path / "shared"), join=True)
    assert len(joined.trials) == 1
    with pytest.raises(GenlabError, match="just created .* by another process"):
        open_study(tmp_path / "c", "race", ["minimize"], storage=default_storage(tmp_path / "shared"))


def test_unreachable_storage_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://tuner:secret@127.0.0.1:{port}/studies"
    with pytest.raises(GenlabError) as caught:
        open_study(tmp_path / "s", "toy", ["minimize"], storage=url)
    message = str(caught.value)
    assert "secret" not in message and f"postgresql://tuner:***@127.0.0.1:{port}/studies" in message
    assert "server is running" in message and "psycopg2-binary" in message
    with pytest.raises(GenlabError, match="nosuchdb"):
        open_study(tmp_path / "s", "toy", ["minimize"], storage="nosuchdb://x")


# --- trials -------------------------------------------------------------------------------------------------------


def test_failing_trial_is_recorded_and_the_study_goes_on(tmp_path):
    study = open_study(tmp_path / "study", "toy", ["minimize"], pruner="none")

    def objective(trial: optuna.Trial) -> float:
        value = quadratic(trial)
        if trial.number == 1:
            raise ValueError("diverged at step 3")
        return float("nan") if trial.number == 2 else value

    optimize(study, objective, n_trials=4)
    assert states(study) == [(0, "COMPLETE"), (1, "FAIL"), (2, "FAIL"), (3, "COMPLETE")]
    assert study.trials[1].user_attrs["error"] == "ValueError: diverged at step 3"
    assert "nan" in study.trials[2].user_attrs["error"]
    assert all(t.user_attrs["worker"]["pid"] == os.getpid() for t in study.trials)
    assert counted_trials(study) == 4


def test_keyboard_interrupt_fails_the_running_trial_and_resume_redoes_it(tmp_path):
    study = open_study(tmp_path / "study", "toy", ["minimize"])

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 1:
            raise KeyboardInterrupt
        return quadratic(trial)

    with pytest.raises(KeyboardInterrupt):
        optimize(study, objective, n_trials=5)
    assert states(study) == [(0, "COMPLETE"), (1, "FAIL")]
    assert study.trials[1].user_attrs["interrupted"] == "KeyboardInterrupt"
    assert counted_trials(study) == 1

    resumed = open_study(tmp_path / "study", resume=True)
    optimize(resumed, quadratic, total_trials=3)
    assert states(resumed) == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE"), (3, "COMPLETE")]
    optimize(resumed, quadratic, total_trials=3)
    assert len(resumed.trials) == 4


def test_median_pruner_stops_a_clearly_bad_trial(tmp_path):
    study = open_study(tmp_path / "study", "toy", ["minimize"], startup_trials=2, warmup_steps=1)
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        value = 100.0 if trial.number == 2 else 1.0 - 0.1 * trial.number
        for step in range(4):
            report_intermediate(trial, step, value)
        return value

    optimize(study, objective, n_trials=4)
    assert states(study) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "PRUNED"), (3, "COMPLETE")]
    assert max(study.trials[2].intermediate_values) == 1
    assert [t.number for t in pareto_front(study)] == [3]
    png = plot_history(study, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_stale_trials_fail_only_when_their_worker_is_gone(tmp_path):
    study = open_study(tmp_path / "study", "toy", ["minimize"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    live = study.ask()
    live.set_user_attr("worker", worker_info(0))
    dead = study.ask()
    dead.set_user_attr("worker", {**worker_info(1), "pid": dead_pid, "started": None})
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", {**worker_info(2), "pid": dead_pid, "machine": "another-host"})

    assert fail_stale_trials(study) == [dead.number]
    assert states(study) == [(0, "RUNNING"), (1, "FAIL"), (2, "RUNNING")]
    assert "ended" in study.trials[1].user_attrs["interrupted"]


def test_resume_after_a_killed_worker(tmp_path):
    study_dir, marker = tmp_path / "study", tmp_path / "hanging"
    worker = spawn_worker(dir=str(study_dir), name="toy", worker=0, n_trials=3, hang_at=1, marker=str(marker))
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert worker.poll() is None, worker.communicate()[0].decode()
        assert time.monotonic() < deadline, "worker did not reach trial 1"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    crashed = optuna.load_study(study_name="toy", storage=default_storage(study_dir))
    assert states(crashed) == [(0, "COMPLETE"), (1, "RUNNING")]

    study = open_study(study_dir, resume=True)
    assert states(study) == [(0, "COMPLETE"), (1, "FAIL")]
    optimize(study, quadratic, total_trials=3)

    final = optuna.load_study(study_name="toy", storage=default_storage(study_dir))
    assert optuna.get_all_study_names(default_storage(study_dir)) == ["toy"]
    assert states(final) == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE"), (3, "COMPLETE")]
    assert final.trials[0].params == crashed.trials[0].params
    assert final.trials[0].user_attrs["worker"]["pid"] == worker.pid
    assert final.trials[3].user_attrs["worker"]["pid"] == os.getpid()


def test_total_trials_does_nothing_when_already_reached(tmp_path):
    study = open_study(tmp_path / "study", "toy", ["minimize"])
    optimize(study, quadratic, n_trials=2)
    optimize(study, quadratic, total_trials=2)
    optimize(study, quadratic, n_trials=5, total_trials=3)
    assert len(study.trials) == 3


# --- multi-objective and outputs ----------------------------------------------------------------------------------

FRONT = [(0, 1), (0.1, 0.4), (0.2, 0.2), (0.5, 0.1), (1, 0), (0.6, 0.6)]


def two_objective_study(study_dir: Path) -> optuna.Study:
    """A (FID, ACD) study whose trials land on FRONT: trials 0-4 form the Pareto front, 2 is its knee, 5 dominated."""
    study = open_study(study_dir, "gasten-step2", ["minimize", "minimize"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.suggest_float("alpha", 0.0, 10.0)
        a, b = FRONT[trial.number]
        report_intermediate(trial, 0, 10 + 90 * a)
        return 10 + 90 * a, 0.5 * b

    optimize(study, objective, n_trials=len(FRONT))
    return study


def test_two_objective_study_pareto_knee_and_plot(tmp_path):
    study = two_objective_study(tmp_path / "study")
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    assert [t.number for t in pareto_front(study)] == [0, 1, 2, 3, 4]
    assert study_knee(study).number == 2
    png = plot_pareto(study, tmp_path / "plots" / "pareto.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(GenlabError, match="single-objective"):
        plot_history(study, tmp_path / "history.png")


def test_summary_files(tmp_path):
    study = two_objective_study(tmp_path / "study")
    path = write_summary(study, tmp_path / "study")
    summary = json.loads(path.read_text())
    assert summary == json.loads(json.dumps(summarize(study)))
    assert summary["n_trials"] == 6 and summary["states"]["COMPLETE"] == 6
    assert [t["number"] for t in summary["pareto_front"]] == [0, 1, 2, 3, 4]
    assert summary["knee"]["number"] == 2 and summary["knee"]["values"] == [28.0, 0.1]
    assert set(summary["trials"][0]) >= {"number", "state", "values", "params", "user_attrs", "duration_s"}
    lines = (tmp_path / "study" / "trials.csv").read_text().splitlines()
    assert len(lines) == 7
    assert lines[0].split(",")[:3] == ["number", "values_0", "values_1"] and "params_alpha" in lines[0]
    assert lines[3].startswith("2,28.0,0.1,")


# --- several workers on one PostgreSQL study ----------------------------------------------------------------------


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    common = {
        "name": "shared", "storage": postgres_url, "join": True, "n_trials": 4, "sleep": 0.03, "pruner": "none",
        "barrier": str(barrier), "n_workers": 2,
    }
    workers = [spawn_worker(dir=str(tmp_path / f"worker{i}"), worker=i, **common) for i in range(2)]
    for worker in workers:
        output = worker.communicate(timeout=120)[0].decode()
        assert worker.returncode == 0, output

    study = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    assert len(study.trials) == 8
    assert sorted(t.number for t in study.trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert pids == {w.pid for w in workers}
    by_index = {i: sum(t.user_attrs["worker"]["worker_index"] == i for t in study.trials) for i in (0, 1)}
    assert by_index == {0: 4, 1: 4}
    assert len({t.params["x"] for t in study.trials}) == 8
    spans = [
        [t for t in study.trials if t.user_attrs["worker"]["worker_index"] == i] for i in (0, 1)
    ]
    first, second = ([min(t.datetime_start for t in s), max(t.datetime_complete for t in s)] for s in spans)
    assert first[0] < second[1] and second[0] < first[1], "the workers did not run at the same time"

    joined = open_study(tmp_path / "later", "shared", storage=postgres_url, resume=True, worker_index=2)
    optimize(joined, quadratic, total_trials=9)
    assert len(joined.trials) == 9
