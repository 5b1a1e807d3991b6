"""`genlab gasten ...`: the two GASTeN steps and their Bayesian hyper-parameter search."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.outcome import ended, refuse_with_resume
from genlab.errors import GenlabError

gasten_app = typer.Typer(
    help="GASTeN: GANs whose samples a binary classifier finds ambiguous (step1, step2, tune).",
    no_args_is_help=True, rich_markup_mode=None,
)

DEFAULT_CONFIG = "gasten/fmnist_3v0"
CONFIG_HELP = f"YAML file or preset, e.g. gasten/mnist_7v1 (default {DEFAULT_CONFIG}: configs/gasten/fmnist_3v0.yaml)."
CLASSIFIER_HELP = "Classifier run dir or .pt; a comma list is one ensemble (mean of probabilities)."


@gasten_app.command("step1")
def step1(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides such as training.num_epochs=5."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this step-1 run from its last checkpoint "
                                          "(its own config; overrides such as training.num_epochs=20 still apply)."),
) -> None:
    """Train the step-1 GAN on the class pair: FID on fixed test noise and a checkpoint every epoch."""
    from genlab.gasten import run_step1
    from genlab.train import load_experiment

    if resume is not None:
        refuse_with_resume("gasten step1", {"--config": config})
        result = run_step1(None, resume=resume, overrides=overrides or [])
    else:
        config = config or DEFAULT_CONFIG
        result = run_step1(load_experiment(config, overrides or []), preset_name=Path(config).stem)
    typer.echo(f"Step 1 {ended(result)} at step {result.step}/{result.total_steps}: {result.run_dir}")
    if result.interrupted:
        typer.echo(f"Continue with: genlab gasten step1 --resume {result.run_dir}")
    typer.echo(f"Next: genlab gasten step2 --config {config or '<its config>'} --step1 {result.run_dir} "
               "--classifier <classifier run>")


@gasten_app.command("step2")
def step2(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides applied to the step-2 config."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    step1_run: Optional[Path] = typer.Option(None, "--step1", help="The step-1 run directory to continue from."),
    classifier: Optional[str] = typer.Option(None, "--classifier", help=CLASSIFIER_HELP + " (gasten.classifier)"),
    weight: Optional[float] = typer.Option(None, "--weight", help="α, the ambiguity-loss weight (default gasten.weight)."),
    step1_epoch: Optional[str] = typer.Option(
        None, "--step1-epoch", help="The step-1 epoch to start from: best, last or a number (gasten.step1_epoch)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Ambiguity loss: confusion, kl or gaussian."),
    name: Optional[str] = typer.Option(None, "--name", help="Step-2 run name (default: <step1>-step2-<loss>-a<α>-e<epoch>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this step-2 run from its last checkpoint."),
) -> None:
    """Continue a step-1 GAN with L_G = L_adv + α·L_amb(C(G(z))); print and save the before/after report."""
    from genlab.gasten import run_step2, step2_config
    from genlab.gasten.pipeline import table
    from genlab.train import load_experiment

    if resume is not None:
        refuse_with_resume("gasten step2", {"--config": config, "--step1": step1_run, "--classifier": classifier,
                                            "--weight": weight, "--step1-epoch": step1_epoch, "--loss": loss,
                                            "--name": name})
        outcome = run_step2(None, resume=resume, overrides=overrides or [])
    else:
        if step1_run is None:
            raise GenlabError("genlab gasten step2 needs --step1 runs/<step-1 run> (or --resume runs/<step-2 run>).")
        chosen_epoch = int(step1_epoch) if step1_epoch is not None and step1_epoch.isdigit() else step1_epoch
        cfg = step2_config(load_experiment(config or DEFAULT_CONFIG), step1_run, classifier=classifier, weight=weight,
                           epoch=chosen_epoch, loss=loss, name=name, overrides=overrides or [])
        outcome = run_step2(cfg)
    result = getattr(outcome, "train", outcome)
    typer.echo(f"Step 2 {ended(result)} at step {result.step}/{result.total_steps}: {result.run_dir}")
    if result.interrupted:
        typer.echo(f"Continue with: genlab gasten step2 --resume {result.run_dir}")
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
RESUME_HELP = ("Continue the study in this directory after a crash or Ctrl-C (its study.json names the study and "
               "storage), as `train --resume` continues a run directory.")


def _study_dir(study_dir: Optional[Path], resume: Optional[Path]) -> Optional[Path]:
    """The study directory: --resume's, or --study-dir (both given must agree)."""
    if resume is None:
        return study_dir
    if study_dir is not None and Path(study_dir).resolve() != Path(resume).resolve():
        raise GenlabError(f"--resume {resume} and --study-dir {study_dir} name different studies; --resume takes the "
                          "study directory, so leave out --study-dir.")
    return resume


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
    config: str = typer.Option(DEFAULT_CONFIG, "--config", "-c", help=CONFIG_HELP),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to search (default tune.timeout)."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to run now (default tune.n_trials)."),
    total_trials: Optional[int] = typer.Option(None, "--total-trials", help="Run until the study holds this many."),
    study_dir: Optional[Path] = typer.Option(None, "--study-dir", help=STUDY_DIR_HELP),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Name of the study in its storage."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help=RESUME_HELP),
    join: bool = typer.Option(False, "--join", help=JOIN_HELP),
    worker_index: int = typer.Option(0, "--worker-index", min=0, help="This worker's number (offsets the seed)."),
) -> None:
    """Search learning rates, betas, blocks and filters of the step-1 GAN, minimising FID (median pruning)."""
    from genlab.train import load_experiment
    from genlab.tune.gasten import tune_step1 as run

    study_dir = _study_dir(study_dir, resume)
    cfg = load_experiment(config, overrides or [])
    outcome = run(cfg, study_dir=study_dir, study_name=study_name, storage=storage, resume=resume is not None,
                  join=join, worker_index=worker_index, n_trials=n_trials, timeout=timeout, total_trials=total_trials)
    _echo_trials(outcome, [cfg.eval.best_metric])
    typer.echo("Continue from the best trial with: genlab gasten step2 --config "
               f"{config} --step1 <its run_dir above> --classifier <classifier run>")


@tune_app.command("step2")
def tune_step2(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides, e.g. gasten.step2_epochs=5."),
    config: str = typer.Option(DEFAULT_CONFIG, "--config", "-c", help=CONFIG_HELP),
    step1_run: Path = typer.Option(..., "--step1", help="The step-1 run whose epochs step 2 may start from."),
    classifier_choices: Optional[list[str]] = typer.Option(
        None, "--classifier-choice", help="A classifier the search may pick (repeat the option for more; each is a "
        "run dir or .pt, or a comma list forming one ensemble). Default: tune.classifiers, else gasten.classifier."),
    step1_epochs: Optional[str] = typer.Option(
        None, "--step1-epochs", help="Step-1 epochs the search may start from, e.g. 5,8,10 (default: tune.step1_epochs, "
        "else every saved epoch)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to search (default tune.timeout)."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to run now (default tune.n_trials)."),
    total_trials: Optional[int] = typer.Option(None, "--total-trials", help="Run until the study holds this many."),
    study_dir: Optional[Path] = typer.Option(None, "--study-dir", help=STUDY_DIR_HELP),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Name of the study in its storage."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help=RESUME_HELP),
    join: bool = typer.Option(False, "--join", help=JOIN_HELP),
    worker_index: int = typer.Option(0, "--worker-index", min=0, help="This worker's number (offsets the seed)."),
) -> None:
    """Search α, the starting epoch and the classifier for low FID and low ACD; report the Pareto front and knee."""
    from genlab.train import load_experiment
    from genlab.tune.gasten import tune_step2 as run

    try:
        epoch_list = [int(e) for e in step1_epochs.split(",") if e.strip()] if step1_epochs else None
    except ValueError:
        raise GenlabError(f"--step1-epochs takes comma-separated epoch numbers such as 5,8,10, not "
                          f"{step1_epochs!r}.") from None
    study_dir = _study_dir(study_dir, resume)
    cfg = load_experiment(config, overrides or [])
    outcome = run(cfg, step1_run, classifiers=classifier_choices or None, epochs=epoch_list, study_dir=study_dir,
                  study_name=study_name, storage=storage, resume=resume is not None, join=join,
                  worker_index=worker_index, n_trials=n_trials, timeout=timeout, total_trials=total_trials)
    _echo_trials(outcome, ["fid", "acd"])
