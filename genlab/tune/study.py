"""Optuna studies for hyper-parameter search: open or resume one, run trials, read off the results.

A study lives in a directory (`study.json`, by default an SQLite `study.db`, summaries and plots) and
in an Optuna storage: that SQLite file, or any SQLAlchemy URL such as `postgresql://host/db` so
workers on several machines share one study. Trials are proposed by a seeded TPE sampler;
single-objective studies may prune bad trials with a median pruner, two-objective ones are read off
as a Pareto front with its knee point.

Lifecycle of a trial: `optimize` tags it with the worker that runs it (host, pid, worker index); an
exception in the objective marks it FAIL with the error in its `error` user attribute and the study
goes on; a killed worker's trial is marked FAIL when the study is next opened on the same machine
(its process is gone) or, from any machine, once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
import math
import os
import random
import re
import socket
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from genlab.errors import GenlabError
from genlab.report.plots import new_figure, save_figure

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("median", "none")
#: States whose trials count toward `total_trials`; FAIL trials count only when the objective raised.
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

Objective = Callable[[optuna.Trial], float | Sequence[float]]

_worker_index: weakref.WeakKeyDictionary[optuna.Study, int] = weakref.WeakKeyDictionary()


def default_storage(study_dir: Path) -> str:
    """The SQLite URL of `study.db` inside the study directory, where a study lives unless told otherwise."""
    return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***`, safe to print and to write to `study.json`."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _driver_hint(url: str) -> str:
    """What to check for the database behind `url`, by its scheme."""
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("sqlite"):
        return "Check that the directory of the database file exists and is writable."
    if scheme.startswith("postgres"):
        driver = "its Python driver is installed (pip install psycopg2-binary)"
    elif scheme.startswith("mysql"):
        driver = "its Python driver is installed (pip install PyMySQL for mysql+pymysql://)"
    else:
        driver = "the SQLAlchemy driver for this scheme is installed"
    return (
        "Check the URL (user, password, host, port, database name), that the database server is running "
        f"and reachable from this machine, and that {driver}."
    )


def _reason(error: BaseException) -> str:
    """The first useful words of a database error, on one line."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error) or type(error).__name__
    text = text.split("(Background on this error", 1)[0]
    return " ".join(text.split()).rstrip(".")


def _driver_url(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 defaults to psycopg 3, genlab ships psycopg2."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options: wait for SQLite locks; check pooled connections of a server before use."""
    drivername = sqlalchemy.engine.make_url(url).drivername
    if drivername.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    return kwargs


def _make_sqlite_dir(url: str) -> None:
    """Create the directory of an SQLite database file, as SQLite only creates the file itself."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return
    if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
        with contextlib.suppress(OSError):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _setup_collision(error: BaseException) -> bool:
    """Whether a database error comes from another process creating the same tables at the same moment."""
    if isinstance(error, sqlalchemy.exc.IntegrityError | sqlalchemy.exc.ProgrammingError):
        return True
    reason = _reason(error).lower()
    return isinstance(error, sqlalchemy.exc.OperationalError) and ("already exists" in reason or "locked" in reason)


def open_storage(url: str, *, heartbeat_interval: int = 30) -> optuna.storages.RDBStorage:
    """Connect to the Optuna storage at `url`, with heartbeats so a killed worker's trials end up FAIL."""
    masked = mask_url(url)
    _make_sqlite_dir(url)
    attempts = 10
    for attempt in range(attempts):
        try:
            driver_url = _driver_url(url)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    driver_url,
                    engine_kwargs=_engine_kwargs(driver_url),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=3 * heartbeat_interval,
                )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            if not _setup_collision(error) or attempt == attempts - 1:
                raise GenlabError(
                    f"Cannot open the Optuna storage {masked}: {_reason(error)}. {_driver_hint(url)}"
                ) from error
            # Workers creating the tables of a fresh database at the same moment collide; the retry finds them.
            log.debug("Storage %s is being set up by another worker (%s); retrying.", masked, _reason(error))
            time.sleep(0.1 * (attempt + 1) + 0.2 * random.random())
    raise AssertionError("unreachable")


def _read_record(study_dir: Path) -> dict[str, Any]:
    """The `study.json` of a study directory, or an empty dict when there is none yet."""
    path = study_dir / STUDY_FILE
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise GenlabError(
            f"Cannot read {path}: {error}. It records which study this directory holds; fix or delete it "
            "and pass --study-name and --storage explicitly."
        ) from error
    if not isinstance(record, dict):
        raise GenlabError(f"{path} is not a JSON object. Delete it and pass --study-name and --storage explicitly.")
    return record


def _write_record(study_dir: Path, name: str, url: str, directions: list[str], seed: int) -> None:
    """Write `study.json` so `--resume` with only the directory finds the study again."""
    record = {
        "name": name,
        "storage": mask_url(url),
        "storage_is_default": url == default_storage(study_dir),
        "directions": directions,
        "seed": seed,
    }
    path = study_dir / STUDY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def _resolve_storage(study_dir: Path, storage: str | None, record: dict[str, Any]) -> str:
    """The storage URL: the one given, else the one `study.json` records, else the default SQLite file."""
    if storage:
        return storage
    if not record or record.get("storage_is_default", True) or not record.get("storage"):
        return default_storage(study_dir)
    url = str(record["storage"])
    if "***" in url:
        raise GenlabError(
            f"{study_dir / STUDY_FILE} records the storage {url} with its password masked. Pass the full URL again "
            "with --storage."
        )
    return url


def _check_directions(directions: Sequence[str]) -> list[str]:
    """Validate objective directions ("minimize"/"maximize") and return them as a list."""
    directions = [str(d).lower() for d in directions]
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise GenlabError(
            f"Invalid study directions {directions!r}: give one direction per objective, each one of "
            f"{', '.join(DIRECTIONS)}."
        )
    return directions


def _sampler(seed: int, n_existing: int) -> optuna.samplers.TPESampler:
    """A seeded multivariate TPE sampler; `seed` already includes the worker index."""
    # A resumed study reseeds past its history, so it does not replay the proposals of the first run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed + 1_000_003 * n_existing, multivariate=True)


def _pruner(pruner: str, n_objectives: int, startup_trials: int, warmup_steps: int) -> optuna.pruners.BasePruner:
    """The median pruner for single-objective studies; none where asked for or with several objectives."""
    if pruner not in PRUNERS:
        raise GenlabError(f"Unknown pruner {pruner!r}. Available: {', '.join(PRUNERS)}.")
    if pruner == "none":
        return optuna.pruners.NopPruner()
    if n_objectives > 1:
        log.info("Pruning is not supported for multi-objective studies; every trial runs to the end.")
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)


def _existing_trials(storage: optuna.storages.RDBStorage, name: str) -> list[FrozenTrial] | None:
    """The trials of study `name` in `storage`, or None when there is no such study."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_all_trials(study_id, deepcopy=False)


def open_study(
    study_dir: Path,
    study_name: str | None = None,
    directions: Sequence[str] | None = None,
    *,
    storage: str | None = None,
    seed: int | None = None,
    worker_index: int = 0,
    pruner: str = "median",
    resume: bool = False,
    join: bool = False,
    startup_trials: int = 5,
    warmup_steps: int = 1,
    heartbeat_interval: int = 30,
) -> optuna.Study:
    """Create, resume or join the study kept in `study_dir`, with a seeded TPE sampler and the chosen pruner.

    `resume=False, join=False` creates a new study and refuses a name the storage already holds.
    `resume=True` continues an existing study (it must exist). `join=True`, for the workers of a shared study,
    loads it or creates it if no worker has yet; it takes precedence over `resume`. Name, storage, directions
    and seed default to what the directory's `study.json` records (storage: `study.db` in the directory; name:
    the directory's name; directions: those of an existing study). Opening an existing study first marks FAIL
    the trials its crashed workers left RUNNING (see `fail_stale_trials`).
    """
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    record = _read_record(study_dir)
    recorded_name = record.get("name")
    if study_name and recorded_name and study_name != recorded_name:
        raise GenlabError(
            f"Study directory {study_dir} already holds study {recorded_name!r}, not {study_name!r}. "
            f"Pass --study-name {recorded_name} to continue it, or choose another study directory."
        )
    name = study_name or recorded_name or study_dir.resolve().name
    url = _resolve_storage(study_dir, storage, record)
    if directions is None:
        directions = record.get("directions")
    wanted = None if directions is None else _check_directions(directions)
    if seed is None:
        seed = int(record.get("seed", 0))
    masked = mask_url(url)

    rdb = open_storage(url, heartbeat_interval=heartbeat_interval)
    existing = _existing_trials(rdb, name)
    if existing is not None and not resume and not join:
        n_complete = sum(t.state == TrialState.COMPLETE for t in existing)
        raise GenlabError(
            f"Study {name!r} already exists in {masked} with {len(existing)} trial(s) ({n_complete} complete). "
            f"Pass --resume {study_dir} to continue it, or choose another --study-name (or study directory) to start "
            "a new one."
        )
    if existing is None and resume and not join:
        raise GenlabError(
            f"Nothing to resume: there is no study {name!r} in {masked}. Check --study-name, --storage and the "
            "study directory, or drop --resume to start a new study."
        )

    if existing is not None:
        directions = [d.name.lower() for d in rdb.get_study_directions(rdb.get_study_id_from_name(name))]
        if wanted is not None and wanted != directions:
            raise GenlabError(
                f"Study {name!r} in {masked} optimises {directions}, not {wanted}. Pass the directions it was "
                "created with, or choose another --study-name."
            )
    elif wanted is None:
        raise GenlabError(
            f"No objective directions for the new study {name!r}: {study_dir / STUDY_FILE} does not record them. "
            "Pass the directions (e.g. minimize for FID; minimize, minimize for FID and ACD)."
        )
    else:
        directions = wanted

    n_existing = len(existing or [])
    sampler = _sampler(seed + worker_index, n_existing)
    study_pruner = _pruner(pruner, len(directions), startup_trials, warmup_steps)
    created = False
    if existing is None:
        try:
            study = optuna.create_study(
                storage=rdb, sampler=sampler, pruner=study_pruner, study_name=name, directions=directions
            )
            created = True
        except DuplicatedStudyError as error:
            if not join:
                raise GenlabError(
                    f"Study {name!r} was just created in {masked} by another process. Pass --resume (or join as a "
                    "worker) to run trials in it, or choose another --study-name."
                ) from error
    if not created:
        study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=study_pruner)
        found = _directions(study)
        if found != directions:
            raise GenlabError(
                f"Study {name!r} in {masked} optimises {found}, not {directions}. Pass the directions it was "
                "created with, or choose another --study-name."
            )
        failed = fail_stale_trials(study)
        if failed:
            log.info("Marked interrupted trial(s) %s of study %r as FAIL.", failed, name)
    _write_record(study_dir, name, url, directions, seed)
    _worker_index[study] = worker_index
    log.info(
        "%s study %r in %s (%s; worker %d).",
        "Created" if created else "Opened",
        name,
        masked,
        ", ".join(directions),
        worker_index,
    )
    return study


def _machine_id() -> str:
    """Identifies this machine, boot and PID namespace, so a PID recorded here can be checked here."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "|".join(parts)


def _process_start(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc, or None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _process_alive(pid: int, started: int | None) -> bool:
    """Whether process `pid` of this machine is still the one that started at `started` (zombies are dead)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = _process_start(pid)
    if info is None:
        return True
    state, start = info
    return state != "Z" and (started is None or start == started)


def worker_info(worker_index: int) -> dict[str, Any]:
    """What a trial records about the worker running it: host, pid, worker index, and how to tell it is gone."""
    info = _process_start(os.getpid())
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "worker_index": worker_index,
        "machine": _machine_id(),
        "started": info[1] if info else None,
    }


def _fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark a RUNNING trial FAIL with `reason` in its `interrupted` user attribute; False if it already ended."""
    try:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return study._storage.get_trial(trial._trial_id).state == TrialState.FAIL


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is gone, so they neither linger nor count; returns their numbers.

    A trial started on this machine fails at once when its process no longer exists; one from another machine
    fails once its heartbeat is older than the grace period. Live workers' trials are left alone.
    """
    machine = _machine_id()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not isinstance(worker, dict) or worker.get("machine") != machine:
            continue
        pid = worker.get("pid")
        if isinstance(pid, int) and not _process_alive(pid, worker.get("started")):
            reason = f"worker process {pid} on {worker.get('host')} ended while the trial ran"
            if _fail_trial(study, trial, reason):
                failed.append(trial.number)
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed += [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in running]
    return sorted(failed)


def counted_trials(study: optuna.Study) -> int:
    """Trials that count toward `total_trials`: complete, pruned, or failed because the objective raised.

    Trials failed by an interruption (Ctrl-C, a killed worker) do not count, so a resumed study redoes them.
    """
    return sum(
        t.state != TrialState.FAIL or "error" in t.user_attrs
        for t in study.get_trials(deepcopy=False, states=COUNTED_STATES)
    )


def _bad_result(result: Any, n_objectives: int) -> str | None:
    """Why an objective's return value is unusable (Optuna will mark the trial FAIL), or None if it is fine."""
    values = list(result) if isinstance(result, Sequence) and not isinstance(result, str) else [result]
    if len(values) != n_objectives:
        return f"objective returned {len(values)} value(s) for a study with {n_objectives} objective(s)"
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"objective returned {value!r}, not a number"
        if not math.isfinite(number):
            return f"objective returned {value!r}"
    return None


def _wrap(objective: Objective, worker_index: int, n_objectives: int) -> Objective:
    """The objective, recording its worker and, when it fails, its error in the trial's user attributes."""
    info = worker_info(worker_index)

    def run(trial: optuna.Trial) -> float | Sequence[float]:
        trial.set_user_attr("worker", info)
        try:
            result = objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            message = f"{type(error).__name__}: {error}"[:2000]
            trial.set_user_attr("error", message)
            log.warning("Trial %d failed (%s); it is recorded as FAIL and the study goes on.", trial.number, message)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", "KeyboardInterrupt")
            raise
        problem = _bad_result(result, n_objectives)
        if problem:
            trial.set_user_attr("error", problem)
        return result

    return run


def _fail_own_running(study: optuna.Study) -> None:
    """Mark FAIL the trials this process left RUNNING (interrupted outside the objective)."""
    pid, machine = os.getpid(), _machine_id()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if isinstance(worker, dict) and worker.get("pid") == pid and worker.get("machine") == machine:
            _fail_trial(study, trial, "KeyboardInterrupt")


def optimize(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    total_trials: int | None = None,
    progress: bool = False,
    worker_index: int | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> None:
    """Run trials until `n_trials` (this call), `timeout` seconds or `total_trials` (whole study) is reached.

    A trial whose objective raises is recorded FAIL (error in user_attrs["error"]) and the study goes on.
    `total_trials` counts the trials `counted_trials` counts, from every worker and every earlier run, so a
    resumed study only tops up; workers of a shared study each stop after the trial they are running, which
    can overshoot by up to one trial per extra worker. With no limit at all it runs until interrupted.
    Ctrl-C marks the running trial FAIL and re-raises KeyboardInterrupt; `--resume` later redoes that trial.
    """
    index = _worker_index.get(study, 0) if worker_index is None else worker_index
    all_callbacks = list(callbacks)
    if total_trials is not None:
        done = counted_trials(study)
        if done >= total_trials:
            log.info("Study %r already has %d of %d trials; nothing to run.", study.study_name, done, total_trials)
            return

        def stop_at_total(study: optuna.Study, trial: FrozenTrial) -> None:
            if counted_trials(study) >= total_trials:
                study.stop()

        all_callbacks.append(stop_at_total)
    try:
        study.optimize(
            _wrap(objective, index, len(study.directions)),
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=all_callbacks,
            show_progress_bar=progress and (n_trials is not None or timeout is not None),
        )
    except KeyboardInterrupt:
        _fail_own_running(study)
        log.warning("Interrupted: the running trial is marked FAIL; continue the study with --resume <study directory>.")
        raise


def report_intermediate(trial: optuna.Trial, step: int, value: float) -> None:
    """Report an intermediate objective value and raise TrialPruned if the pruner stops the trial.

    Multi-objective studies cannot prune, so there it does nothing.
    """
    if len(trial.study.directions) > 1:
        return
    trial.report(float(value), step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step} with value {value:g}")


def _values(trial: FrozenTrial, directions: Sequence[str] | None) -> list[float]:
    """A trial's objective values, negated for maximised objectives so that lower is always better."""
    values = [float(v) for v in trial.values]
    if directions is not None:
        values = [-v if d.lower() == "maximize" else v for v, d in zip(values, directions, strict=True)]
    return values


def knee_point(trials: Sequence[FrozenTrial], directions: Sequence[str] | None = None) -> FrozenTrial:
    """The knee of a Pareto front: the best compromise, chosen deterministically.

    Objectives (minimised, unless `directions` says "maximize") are scaled to [0, 1] over the front. With two
    objectives the knee is the point farthest below the line joining the two extreme points; with fewer than three
    points, no point below that line, or more than two objectives, it is the point closest to the utopia point.
    Ties go to the lowest trial number.
    """
    if not trials:
        raise ValueError("knee_point needs at least one trial")
    ordered = sorted(trials, key=lambda t: t.number)
    points = [_values(t, directions) for t in ordered]
    n_objectives = len(points[0])
    if n_objectives == 1:
        return ordered[min(range(len(points)), key=lambda i: (points[i][0], ordered[i].number))]
    lows = [min(p[k] for p in points) for k in range(n_objectives)]
    spans = [max(p[k] for p in points) - lows[k] for k in range(n_objectives)]
    scaled = [[(p[k] - lows[k]) / spans[k] if spans[k] > 0 else 0.0 for k in range(n_objectives)] for p in points]
    tolerance = 1e-9

    def argmax(scores: list[float]) -> int:
        best = max(scores)
        return next(i for i, s in enumerate(scores) if s >= best - tolerance)

    if n_objectives == 2 and len(scaled) >= 3:
        first = min(range(len(scaled)), key=lambda i: (scaled[i][0], scaled[i][1]))
        last = min(range(len(scaled)), key=lambda i: (scaled[i][1], scaled[i][0]))
        (x1, y1), (x2, y2) = scaled[first], scaled[last]
        length = math.hypot(x2 - x1, y2 - y1)
        origin = (x2 - x1) * (0 - y1) - (y2 - y1) * (0 - x1)
        if length > tolerance and abs(origin) > tolerance:
            # Distance to the line, positive on the side of the utopia point (0, 0).
            side = math.copysign(1.0, origin)
            below = [side * ((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) / length for x, y in scaled]
            if max(below) > tolerance:
                return ordered[argmax(below)]
    return ordered[argmax([-math.hypot(*p) for p in scaled])]


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated complete trials (multi-objective), or the best trial (single), sorted by trial number."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    try:
        return [study.best_trial]
    except ValueError:
        return []


def _directions(study: optuna.Study) -> list[str]:
    """The study's directions as "minimize"/"maximize" strings."""
    return [d.name.lower() for d in study.directions]


def study_knee(study: optuna.Study) -> FrozenTrial | None:
    """The knee point of the study's Pareto front, or None before any trial completed."""
    front = pareto_front(study)
    return knee_point(front, _directions(study)) if front else None


def _figure() -> tuple[Any, Any]:
    """A figure on its own Agg canvas and its one axes."""
    figure = new_figure()
    return figure, figure.add_subplot(1, 1, 1)


def plot_pareto(
    study: optuna.Study,
    path: Path,
    knee: FrozenTrial | None = None,
    labels: tuple[str, str] = ("FID", "ACD"),
) -> Path:
    """Save a PNG of a two-objective study: all trials grey, the Pareto front red, the knee (default: computed) marked."""
    if len(study.directions) != 2:
        raise GenlabError(
            f"A Pareto plot needs a two-objective study; study {study.study_name!r} has {len(study.directions)} "
            "objective(s). Use plot_history for a single-objective study."
        )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = sorted(pareto_front(study), key=lambda t: (t.values[0], t.values[1], t.number))
    if knee is None and front:
        knee = knee_point(front, _directions(study))
    figure, ax = _figure()
    ax.scatter([t.values[0] for t in complete], [t.values[1] for t in complete], s=18, color="0.6", label="trials")
    ax.plot(
        [t.values[0] for t in front], [t.values[1] for t in front], "o-", color="tab:red", markersize=5,
        label="Pareto front",
    )
    if knee is not None:
        ax.scatter([knee.values[0]], [knee.values[1]], s=140, facecolors="none", edgecolors="black", linewidths=1.5,
                   label="knee", zorder=3)
        ax.annotate(f"trial {knee.number}", (knee.values[0], knee.values[1]), textcoords="offset points",
                    xytext=(8, 8))
    better = ["lower" if d == "minimize" else "higher" for d in _directions(study)]
    ax.set_xlabel(f"{labels[0]} ({better[0]} is better)")
    ax.set_ylabel(f"{labels[1]} ({better[1]} is better)")
    ax.set_title(f"{study.study_name}: {len(complete)} complete trials, {len(front)} on the Pareto front")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return save_figure(figure, path)


def plot_history(study: optuna.Study, path: Path, label: str = "FID") -> Path:
    """Save a PNG of a single-objective study: each trial's value and the running best, pruned trials marked."""
    if len(study.directions) != 1:
        raise GenlabError(
            f"A history plot needs a single-objective study; study {study.study_name!r} has "
            f"{len(study.directions)} objectives. Use plot_pareto for a two-objective study."
        )
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.intermediate_values]
    figure, ax = _figure()
    ax.scatter([t.number for t in complete], [t.value for t in complete], s=18, color="tab:blue", label="complete")
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="0.5", label="pruned (last report)")
    best: list[float] = []
    for trial in complete:
        value = float(trial.value)
        best.append(value if not best else (max if maximize else min)(best[-1], value))
    ax.step([t.number for t in complete], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{label} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title(f"{study.study_name}: {len(complete)} complete, {len(pruned)} pruned trials")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return save_figure(figure, path)


def _number(value: Any) -> float | None:
    """A JSON-safe float: None for missing or non-finite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain JSON data."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": None if trial.values is None else [_number(v) for v in trial.values],
        "params": trial.params,
        "user_attrs": trial.user_attrs,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
        "duration_s": trial.duration.total_seconds() if trial.duration is not None else None,
    }


def summarize(study: optuna.Study) -> dict[str, Any]:
    """The study as plain JSON data: every trial, the state counts, and the best trial or Pareto front and knee."""
    trials = study.get_trials(deepcopy=False)
    directions = _directions(study)
    front = pareto_front(study)
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "directions": directions,
        "n_trials": len(trials),
        "states": {state.name: sum(t.state == state for t in trials) for state in TrialState},
        "trials": [_trial_record(t) for t in trials],
    }
    if len(directions) == 1:
        summary["best"] = _trial_record(front[0]) if front else None
    else:
        knee = knee_point(front, directions) if front else None
        summary["pareto_front"] = [_trial_record(t) for t in front]
        summary["knee"] = _trial_record(knee) if knee is not None else None
    return summary


def _flat(value: Any) -> Any:
    """A CSV cell: JSON for containers, the value otherwise."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list | tuple) else value


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    """Write one row per trial (columns named like Optuna's trials_dataframe), with no pandas needed."""
    trials = study.get_trials(deepcopy=False)
    n_objectives = len(study.directions)
    value_columns = ["value"] if n_objectives == 1 else [f"values_{k}" for k in range(n_objectives)]
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({name for t in trials for name in t.user_attrs})
    header = [
        "number", *value_columns, "datetime_start", "datetime_complete", "duration",
        *[f"params_{p}" for p in params], *[f"user_attrs_{a}" for a in attrs], "state",
    ]
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for t in trials:
            values = list(t.values) if t.values is not None else [None] * n_objectives
            writer.writerow([
                t.number, *values,
                t.datetime_start.isoformat() if t.datetime_start else None,
                t.datetime_complete.isoformat() if t.datetime_complete else None,
                t.duration.total_seconds() if t.duration is not None else None,
                *[_flat(t.params.get(p)) for p in params],
                *[_flat(t.user_attrs.get(a)) for a in attrs],
                t.state.name,
            ])
    return path


def write_summary(study: optuna.Study, study_dir: Path) -> Path:
    """Write `summary.json` and `trials.csv` into the study directory; returns the path of `summary.json`."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summarize(study), indent=2, default=str) + "\n")
    tmp.replace(path)
    write_trials_csv(study, study_dir / "trials.csv")
    return path
