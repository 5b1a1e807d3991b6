"""The `genlab` command line: train, sample, evaluate, config, prepare, classifier, gasten, runs, report, doctor,
study, compare.

Commands import torch and the modules that use it inside their bodies: that keeps `genlab --help`
and typos fast (torch alone takes seconds to import). These imports are lazy for start-up time
only; no import cycle hides behind them (`make lint` checks the layers with import-linter).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from genlab.cli.classifier import classifier_app
from genlab.cli.doctor import register as register_doctor
from genlab.cli.gasten import gasten_app
from genlab.cli.outcome import ended, refuse_with_resume
from genlab.cli.runs import register as register_run_commands
from genlab.cli.study import register as register_study_commands
from genlab.errors import GenlabError

app = typer.Typer(
    help="genlab: train, sample and inspect image generative models from one YAML per experiment.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Show and list configurations.", no_args_is_help=True, rich_markup_mode=None)
prepare_app = typer.Typer(help="Fetch or preprocess data sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config")
app.add_typer(prepare_app, name="prepare")
app.add_typer(classifier_app, name="classifier")
app.add_typer(gasten_app, name="gasten")
register_run_commands(app)
register_study_commands(app)
register_doctor(app)


def _schema_help() -> str:
    from genlab.config import describe_schema

    header = "Every config key (override any as key=value; defaults shown):"
    return header + "\n\n\b\n" + "\n".join(describe_schema())


@app.command(epilog=_schema_help())
def train(
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides such as training.lr_g=1e-4."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML file or preset name (default: built-in defaults)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory from its last checkpoint."),
) -> None:
    """Train a model; every run lands in runs/<name>/ with config, logs, sample grids and checkpoints."""
    from genlab import distributed
    from genlab.train import load_experiment
    from genlab.train import train as run_training

    if resume is not None:
        refuse_with_resume("train", {"--config": config})
        result = run_training(resume=resume, overrides=overrides or [])
    else:
        cfg = load_experiment(config, overrides or [])
        preset = Path(config).stem if config else None
        result = run_training(cfg, preset_name=preset)
    if not distributed.is_main_process():
        return  # under torchrun, rank 0 alone tells how the run ended
    typer.echo(f"Training {ended(result)} at step {result.step}/{result.total_steps}.")
    typer.echo(f"Results: {result.run_dir}  (samples/latest.png, metrics.jsonl, checkpoints/last.pt)")
    if result.interrupted:
        typer.echo(f"Continue with: genlab train --resume {result.run_dir}")


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="A run directory, e.g. runs/<name>."),
    n: int = typer.Option(64, "--n", min=1, help="Number of images."),
    out: str = typer.Option("samples.png", "--out", help="grid.png, a folder (dir/) of PNGs, or samples.npz."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA generator (when the run kept one)."),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    checkpoint: str = typer.Option("last", "--checkpoint", help="last, best, step_XXXXXXXX or a .pt path."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="Truncation trick threshold, e.g. 0.7."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler: ddpm, ddim or dpm++ (others ignore it)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion sampling steps (default: the run's)."),
    eta: Optional[float] = typer.Option(None, "--eta", help="DDIM's eta in [0, 1] (0 = deterministic)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar for long samplers."),
) -> None:
    """Draw samples from a trained run (any family; sampler options apply where the family has them)."""
    from genlab.generate import generate, load_run, write_samples
    from genlab.methods import SampleOptions

    loaded = load_run(run_dir, checkpoint, device)
    options = SampleOptions(ema=ema, truncation=truncation, sampler=sampler, steps=steps, eta=eta, progress=progress)
    images = generate(loaded.method, n, seed=seed, options=options)
    path = write_samples(images, out)
    typer.echo(f"Wrote {n} samples from step {loaded.step} to {path}")


METRICS_HELP = ("Comma-separated metrics: fid, kid, is, prdc or any other registered one (an unknown name lists them "
                "all), and the classifier metrics acd, focd, hubris (with --classifier, or the run's eval.classifier / "
                "gasten.classifier).")


def _metric_names(metrics: str) -> list[str]:
    """--metrics as names, each checked against the metric registry and the classifier metrics."""
    from genlab.metrics import METRICS
    from genlab.metrics.classifier import CLASSIFIER_METRICS
    from genlab.registry import closest

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    known = [*METRICS.names(), *CLASSIFIER_METRICS]
    for name in names:
        if name not in known:
            hint = closest(name, known)
            raise GenlabError(f"--metrics: {name!r} is not a metric" + (f" — did you mean {hint!r}?" if hint else ".")
                              + f" Available: {', '.join(known)}.")
    if not names:
        raise GenlabError(f"--metrics needs at least one metric name, e.g. fid. Available: {', '.join(known)}.")
    return names


@app.command()
def evaluate(
    run_dir: Optional[Path] = typer.Argument(None, help="A run directory to sample from (or use --fake)."),
    metrics: str = typer.Option("fid", "--metrics", help=METRICS_HELP),
    n: Optional[int] = typer.Option(None, "--n", min=2, help="Samples to generate from the run (default: its eval.num_samples)."),
    real: Optional[str] = typer.Option(
        None, "--real", help="Folder, .npz, or DATASET[:SPLIT] (default: the run's data at eval.real_split, first "
        "eval.real_samples images, as during training; a DATASET without SPLIT takes eval.real_split too)."),
    fake: Optional[str] = typer.Option(None, "--fake", help="Folder or .npz of generated images (instead of a run)."),
    extractor: Optional[str] = typer.Option(
        None, "--extractor", help="inception, or domain (classifier of the data set); default: the run's eval.extractor."),
    classifier: Optional[str] = typer.Option(
        None, "--classifier", help="Binary classifier run/.pt (comma list = ensemble) for acd, focd, hubris "
        "(default: the run's eval.classifier or gasten.classifier)."),
    checkpoint: str = typer.Option("last", "--checkpoint", help="last, best, step_XXXXXXXX or a .pt path."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Sample the EMA generator."),
    fast: bool = typer.Option(False, "--fast", help="Faster reduced-precision features (fp16 CUDA, bf16 AMX, else int8)."),
    fast_precision: Optional[str] = typer.Option(
        None, "--fast-precision", help="Force the fast path: bf16, fp16 or int8 (implies --fast)."
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help="Feature-extraction batch (default 256 on CUDA, 64 else; halved on OOM)."
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Noise seed (default: the run's evaluation noise, data.seed + 4, as during training; "
        "0 for --fake). KID subsets and IS use the run's data.seed."),
    download: bool = typer.Option(False, "--download", help="Allow downloading Inception weights if none are local."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler: ddpm, ddim or dpm++ (others ignore it)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion sampling steps (default: the run's)."),
    eta: Optional[float] = typer.Option(None, "--eta", help="DDIM's eta in [0, 1] (0 = deterministic)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
) -> None:
    """Score a run's samples (or any two image sources) with any registered metric; prints what it compared.

    On a run, the defaults reproduce the run's own evaluation during training: the same noise, real
    images, sample count and seeds, so a generator gets the same FID here as in its metrics.jsonl.
    """
    from genlab.evaluation import RunEvaluator, extractor_for, noise_seed, parse_real, score_sources
    from genlab.generate import generate, load_run
    from genlab.methods import SampleOptions
    from genlab.metrics import build_extractor
    from genlab.metrics.classifier import CLASSIFIER_METRICS
    from genlab.train.logging import RunLogger
    from genlab.utils import select_device

    names = _metric_names(metrics)
    needs_extractor = any(m not in CLASSIFIER_METRICS for m in names)
    torch_device = select_device(device)
    fast_mode = fast_precision or fast
    if run_dir is None:
        if fake is None or real is None:
            raise GenlabError("Give a run directory, or both --fake and --real (folders, .npz files, or DATASET[:SPLIT]).")
        if extractor == "domain":
            raise GenlabError("--extractor domain needs a run (it trains on the run's data set); use inception here.")
        real_source, key = parse_real(real)
        feats = build_extractor(extractor or "inception", download=download, device=torch_device,
                                fast=fast_mode) if needs_extractor else None
        seed = 0 if seed is None else seed
        typer.echo(f"Comparing {fake} with {real} (seed {seed}).")
        results = score_sources(fake, real_source, names, extractor=feats, classifier=classifier, real_cache_key=key,
                                seed=seed, batch_size=batch_size, device=torch_device)
    else:
        loaded = load_run(run_dir, checkpoint, device)
        cfg = loaded.cfg
        updates = {k: v for k, v in {"extractor": extractor, "classifier": classifier}.items() if v is not None}
        if fast_mode:
            updates["fast"] = fast_mode
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update=updates)})
        feats = extractor_for(cfg, cfg.eval.extractor, torch_device, cfg.eval.fast, download) if needs_extractor else None
        options = SampleOptions(ema=ema, sampler=sampler, steps=steps, eta=eta)
        seed = noise_seed(cfg) if seed is None else seed
        n = n or cfg.eval.num_samples
        if real is None:
            evaluator = RunEvaluator(cfg, torch_device, names, extractor=feats, batch_size=batch_size)
            typer.echo(f"Scoring {run_dir} ({checkpoint}, step {loaded.step}, {'EMA' if ema else 'raw'} generator): "
                       f"{evaluator.describe(n, seed)}.")
            results = evaluator(loaded.method, seed=seed, num_samples=n, options=options).results
        else:
            real_source, key = parse_real(real, cfg.data, cfg.eval.real_split)
            typer.echo(f"Scoring {run_dir} ({checkpoint}, step {loaded.step}): fake: {n} samples, noise seed {seed}; "
                       f"real: {real}; metric seed {cfg.data.seed}.")
            images = generate(loaded.method, n, seed=seed, batch_size=cfg.training.batch_size, options=options)
            results = score_sources(images, real_source, names, extractor=feats,
                                    classifier=classifier or cfg.eval.classifier or cfg.gasten.classifier,
                                    real_cache_key=key, seed=cfg.data.seed, batch_size=batch_size, device=torch_device)
        logger = RunLogger(Path(run_dir), tensorboard=False)
        logger.log(loaded.step, results, evaluation=True, checkpoint=checkpoint, samples=n, seed=seed,
                   extractor=cfg.eval.extractor, precision=getattr(feats, "precision", None))
        logger.close()
    width = max((len(k) for k in results), default=6)
    typer.echo(f"{'metric':<{width}}  value")
    for key, value in results.items():
        typer.echo(f"{key:<{width}}  {value:.6g}")


@config_app.command("show")
def config_show(
    preset: Optional[str] = typer.Argument(None, help="Preset name or YAML path (default: built-in defaults)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides to apply first."),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file or preset name, as for train (instead of the positional PRESET)."),
) -> None:
    """Print a resolved configuration with every key, its value and its description."""
    from genlab.config import describe_schema, load_config

    overrides = list(overrides or [])
    if preset is not None and "=" in preset:  # `config show a.b=1` or `config show --config X a.b=1`
        overrides.insert(0, preset)
        preset = None
    if config is not None and preset is not None:
        raise GenlabError(f"Give the config once: either `genlab config show {preset}` or "
                          f"`genlab config show --config {config}`, not both.")
    cfg = load_config(config or preset, overrides)
    typer.echo("\n".join(describe_schema(values=cfg)))


@config_app.command("list")
def config_list() -> None:
    """List the shipped presets."""
    from genlab.config import list_presets

    for name in list_presets():
        typer.echo(name)


@prepare_app.command("data")
def prepare_data(
    name: str = typer.Argument(..., help="Data set name, e.g. fashion-mnist, mnist, cifar10."),
    root: Optional[str] = typer.Option(None, "--root", help="Where to put it (default: $GENLAB_DATA or ./data)."),
    split: Optional[str] = typer.Option(
        None, "--split", help="One split to check (default: train and test, the splits training and evaluation read)."),
) -> None:
    """Make a data set available offline: use local files if present, otherwise download it now."""
    from genlab.config import DataConfig
    from genlab.data import build_dataset
    from genlab.errors import DataNotFoundError

    for part in [split] if split else ["train", "test"]:
        try:
            dataset = build_dataset(DataConfig(name=name, root=root, split=part, download=False))
            typer.echo(f"{name} is already available: {len(dataset)} images ({part}).")
            continue
        except DataNotFoundError:  # only missing files call for a download; any other error is the user's to fix
            pass
        dataset = build_dataset(DataConfig(name=name, root=root, split=part, download=True))
        typer.echo(f"Downloaded {name}: {len(dataset)} images ({part}).")


@prepare_app.command("faces")
def prepare_faces(
    src: Path = typer.Option(..., "--src", help="Folder of photos (searched recursively; sub-folders kept)."),
    out: Path = typer.Option(..., "--out", help="Where aligned crops go (a cache: up-to-date crops are kept)."),
    size: int = typer.Option(128, "--size", min=16, help="Side of the aligned square crops."),
    device: str = typer.Option("auto", "--device", help="Device for the MTCNN detector: auto (CUDA, else CPU), cpu, cuda."),
    margin: float = typer.Option(0.0, "--margin", min=0.0, help="Zoom out around the face for more context."),
    heldout: int = typer.Option(
        5000, "--heldout", min=0, help="Faces held out in OUT/test/ for FID (at most a tenth; the rest go to "
        "OUT/train/); 0 writes one flat folder."),
) -> None:
    """Detect faces with MTCNN, align them to canonical eye/nose/mouth positions, cache the crops."""
    from genlab.data.faces import prepare_faces as run

    report = run(src, out, size=size, device=device, margin=margin, heldout=heldout)
    typer.echo(report.summary())
    evaluation = " eval.real_split=test" if heldout else ""
    typer.echo(f"Train on them with: genlab train data.name=imagefolder data.root={out} data.image_size={size}"
               f"{evaluation}  (the faces_* presets read data/faces_aligned)")


def main() -> None:
    """Entry point: user mistakes print one paragraph and exit 2, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        app()
    except GenlabError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("Interrupted. Continue with --resume <run directory> (a search: the same command with "
                   "--resume <study directory>).", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
