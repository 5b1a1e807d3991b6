"""`genlab gasten ...`: the two GASTeN steps and their Bayesian hyper-parameter search."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.errors import GenlabError

gasten_app = typer.Typer(
    help="GASTeN: GANs whose samples a binary classifier finds ambiguous (step1, step2, tune).",
    no_args_is_help=True, rich_markup_mode=None,
)

CONFIG_HELP = "YAML file or preset, e.g. gasten/fmnist_3v0 (configs/gasten/fmnist_3v0.yaml)."


@gasten_app.command("step1")
def step1(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides such as training.num_epochs=5."),
    config: str = typer.Option("gasten/fmnist_3v0", "--config", "-c", help=CONFIG_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this step-1 run from its last checkpoint "
                                          "(its own config; overrides such as training.num_epochs=20 still apply)."),
) -> None:
    """Train the step-1 GAN on the class pair: FID on fixed test noise and a checkpoint every epoch."""
    from genlab.gasten import run_step1
    from genlab.train import load_experiment

    if resume is not None:
        result = run_step1(None, resume=resume, overrides=overrides or [])
    else:
        result = run_step1(load_experiment(config, overrides or []), preset_name=Path(config).stem)
    typer.echo(f"Step 1 {'stopped early' if result.interrupted else 'finished'} at step {result.step}/"
               f"{result.total_steps}: {result.run_dir}")
    typer.echo(f"Next: genlab gasten step2 --config {config} --step1 {result.run_dir} --classifier <classifier run>")


@gasten_app.command("step2")
def step2(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides applied to the step-2 config."),
    config: str = typer.Option("gasten/fmnist_3v0", "--config", "-c", help=CONFIG_HELP),
    step1_run: Optional[Path] = typer.Option(None, "--step1", help="The step-1 run directory to continue from."),
    classifier: Optional[str] = typer.Option(None, "--classifier", help="Classifier run dir/.pt (comma list = ensemble)."),
    weight: Optional[float] = typer.Option(None, "--weight", help="α, the ambiguity-loss weight (default gasten.weight)."),
    epoch: Optional[str] = typer.Option(None, "--epoch", help="Step-1 epoch to start from: best, last or a number."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Ambiguity loss: confusion, kl or gaussian."),
    name: Optional[str] = typer.Option(None, "--name", help="Step-2 run name (default: <step1>-step2-<loss>-a<α>-e<epoch>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this step-2 run from its last checkpoint."),
) -> None:
    """Continue a step-1 GAN with L_G = L_adv + α·L_amb(C(G(z))); print and save the before/after report."""
    from genlab.gasten import run_step2, step2_config
    from genlab.gasten.pipeline import table
    from genlab.train import load_experiment

    if resume is not None:
        outcome = run_step2(None, resume=resume, overrides=overrides or [])
    else:
        if step1_run is None:
            raise GenlabError("genlab gasten step2 needs --step1 runs/<step-1 run> (or --resume runs/<step-2 run>).")
        chosen_epoch = int(epoch) if epoch is not None and epoch.isdigit() else epoch
        cfg = step2_config(load_experiment(config), step1_run, classifier=classifier, weight=weight, epoch=chosen_epoch,
                           loss=loss, name=name, overrides=overrides or [])
        outcome = run_step2(cfg)
    result = getattr(outcome, "train", outcome)
    typer.echo(f"Step 2 {'stopped early' if result.interrupted else 'finished'} at step {result.step}/"
               f"{result.total_steps}: {result.run_dir}")
    if hasattr(outcome, "comparison"):
        typer.echo(table(outcome.comparison))
        for label, path in outcome.files.items():
            typer.echo(f"{label}: {path}")


tune_app = typer.Typer(help="Bayesian hyper-parameter search (Optuna TPE) for step 1 or step 2.",
                       no_args_is_help=True, rich_markup_mode=None)
gasten_app.add_typer(tune_app, name="tune")

STUDY_DIR_HELP = "Where the study lives (default <output_dir>/tune/<name>-step1|step2): study.db, trials/, plots."
STORAGE_HELP = "SQLAlchemy URL, e.g. postgresql://user:pw@host/db for workers on several machines (default: SQLite)."
JOIN_HELP = "Join a shared study as one more worker (created by whichever worker comes first)."


def _echo_trials(outcome, objectives: list[str]) -> None:
    """One line per trial worth reading: the best or the Pareto front, then the files."""
    from genlab.tune import pareto_front, study_knee

    study = outcome.study
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    typer.echo(f"Study {study.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    front = pareto_front(study)
    knee = study_knee(study) if len(objectives) > 1 else None
    for trial in front:
        values = ", ".join(f"{name}={value:.4g}" for name, value in zip(objectives, trial.values, strict=True))
        mark = "  <- knee" if knee is not None and trial.number == knee.number else ""
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        typer.echo(f"  trial {trial.number}: {values}  [{params}]  {trial.user_attrs.get('run_dir', '')}{mark}")
    for label, path in outcome.files.items():
        typer.echo(f"{label}: {path}")


@tune_app.command("step1")
def tune_step1(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides, e.g. training.num_epochs=5."),
    config: str = typer.Option("gasten/fmnist_3v0", "--config", "-c", help=CONFIG_HELP),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to search (default tune.timeout)."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to run now (default tune.n_trials)."),
    total_trials: Optional[int] = typer.Option(None, "--total-trials", help="Run until the study holds this many."),
    study_dir: Optional[Path] = typer.Option(None, "--study-dir", help=STUDY_DIR_HELP),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Name of the study in its storage."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the study after a crash or Ctrl-C."),
    join: bool = typer.Option(False, "--join", help=JOIN_HELP),
    worker_index: int = typer.Option(0, "--worker-index", min=0, help="This worker's number (offsets the seed)."),
) -> None:
    """Search learning rates, betas, blocks and filters of the step-1 GAN, minimising FID (median pruning)."""
    from genlab.train import load_experiment
    from genlab.tune.gasten import tune_step1 as run

    cfg = load_experiment(config, overrides or [])
    outcome = run(cfg, study_dir=study_dir, study_name=study_name, storage=storage, resume=resume, join=join,
                  worker_index=worker_index, n_trials=n_trials, timeout=timeout, total_trials=total_trials)
    _echo_trials(outcome, [cfg.eval.best_metric])
    typer.echo("Continue from the best trial with: genlab gasten step2 --config "
               f"{config} --step1 <its run_dir above> --classifier <classifier run>")


@tune_app.command("step2")
def tune_step2(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides, e.g. gasten.step2_epochs=5."),
    config: str = typer.Option("gasten/fmnist_3v0", "--config", "-c", help=CONFIG_HELP),
    step1_run: Path = typer.Option(..., "--step1", help="The step-1 run whose epochs step 2 may start from."),
    classifier: Optional[list[str]] = typer.Option(None, "--classifier", help="A classifier to choose from (repeat)."),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="Step-1 epochs to choose from, e.g. 5,8,10 (default all)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to search (default tune.timeout)."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to run now (default tune.n_trials)."),
    total_trials: Optional[int] = typer.Option(None, "--total-trials", help="Run until the study holds this many."),
    study_dir: Optional[Path] = typer.Option(None, "--study-dir", help=STUDY_DIR_HELP),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Name of the study in its storage."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the study after a crash or Ctrl-C."),
    join: bool = typer.Option(False, "--join", help=JOIN_HELP),
    worker_index: int = typer.Option(0, "--worker-index", min=0, help="This worker's number (offsets the seed)."),
) -> None:
    """Search α, the starting epoch and the classifier for low FID and low ACD; report the Pareto front and knee."""
    from genlab.train import load_experiment
    from genlab.tune.gasten import tune_step2 as run

    try:
        epoch_list = [int(e) for e in epochs.split(",") if e.strip()] if epochs else None
    except ValueError:
        raise GenlabError(f"--epochs takes comma-separated epoch numbers such as 5,8,10, not {epochs!r}.") from None
    cfg = load_experiment(config, overrides or [])
    outcome = run(cfg, step1_run, classifiers=classifier or None, epochs=epoch_list, study_dir=study_dir,
                  study_name=study_name, storage=storage, resume=resume, join=join, worker_index=worker_index,
                  n_trials=n_trials, timeout=timeout, total_trials=total_trials)
    _echo_trials(outcome, ["fid", "acd"])
