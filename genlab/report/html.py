"""The self-contained HTML report: one file, images and plots inlined, no network, opens from disk.

`write_report(runs, out)` renders one section per run directory (summary, the config keys that
differ from the family's defaults, loss and metric curves, the sample-grid timeline, the family's
own figures, GASTeN histograms when present, the environment) and, for several runs, a table
comparing their summaries. Everything taken from configs, names and paths is HTML-escaped, so a
run named `<script>` shows as text. There is no script in the page at all.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from genlab.config import default_config
from genlab.report.plots import new_figure
from genlab.runs.records import read_json, read_jsonl, read_run_config, run_status

#: Keys of metrics.jsonl that are bookkeeping, not curves.
NOT_CURVES = {"step", "epoch", "evaluation", "checkpoint", "samples", "extractor", "precision", "classifier_histogram"}
TIMELINE_GRIDS = 8

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:24px}h2{font-size:20px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin-top:20px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px;vertical-align:top}
th{background:#f3f3f3}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.grids{display:flex;flex-wrap:wrap;gap:12px}.grids figure{margin:0}figcaption{font-size:12px;color:#555}
img{image-rendering:pixelated;max-width:100%}.muted{color:#777}
"""


def esc(value: Any) -> str:
    """Text for HTML: everything escaped, quotes included."""
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    """A PNG as an inline data: URI (the report needs no other file)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_tag(png: bytes, alt: str, width: int | None = None) -> str:
    """An <img> with the PNG inlined."""
    size = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(png)}" alt="{esc(alt)}"{size}>'


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config mapping -> {"group.key": value}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def config_diff(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, default, value) for every key whose value differs from its family's default."""
    family = (config.get("model") or {}).get("family", "gan")
    defaults = flatten(default_config(family).to_dict())
    values = flatten(config)
    return [(k, defaults.get(k), v) for k, v in values.items() if defaults.get(k) != v]


def curves_png(records: list[dict[str, Any]], evaluation: bool) -> bytes | None:
    """Training curves (or evaluation metrics) against the step, one panel per quantity, as PNG bytes."""
    rows = [r for r in records if bool(r.get("evaluation")) == evaluation]
    keys = sorted({k for r in rows for k, v in r.items()
                   if k not in NOT_CURVES and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = -(-len(keys) // cols)
    fig = new_figure((4.2 * cols, 2.6 * nrows))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, cols, i + 1)
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if evaluation else None,
                markersize=3, linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _timeline(samples: Path) -> list[Path]:
    """Up to TIMELINE_GRIDS fixed-noise grids, evenly spread over the run (first and last included)."""
    grids = sorted(samples.glob("step_*.png"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if len(grids) <= TIMELINE_GRIDS:
        return grids
    picks = {round(i * (len(grids) - 1) / (TIMELINE_GRIDS - 1)) for i in range(TIMELINE_GRIDS)}
    return [grids[i] for i in sorted(picks)]


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "—" if value is None else str(value)


def run_section(root: Path) -> str:
    """One run's part of the report."""
    root = Path(root)
    config = read_run_config(root) if (root / "config.yaml").is_file() else {}
    summary = read_json(root / "summary.json") or {}
    env = read_json(root / "env.json") or {}
    records = read_jsonl(root / "metrics.jsonl")
    parts = [f"<h2>{esc(root.name)}</h2>", f'<p class="muted">{esc(root.resolve())}</p>']
    facts = [("status", run_status(root)), ("family", summary.get("family") or config.get("model", {}).get("family")),
             ("architecture", summary.get("architecture")), ("steps", f"{summary.get('steps')} / {summary.get('total_steps')}"),
             ("training seconds", summary.get("train_seconds")), ("images seen", summary.get("images_seen")),
             ("parameters", summary.get("parameters")),
             ("sampling seconds per image", summary.get("sample_seconds_per_image")),
             ("final metrics", summary.get("final_metrics")),
             (f"best {summary.get('best_metric') or ''}".strip(), summary.get("best")),
             ("data", f"{config.get('data', {}).get('name')} at {config.get('data', {}).get('image_size')} px")]
    parts.append("<h3>Summary</h3>" + _table([(k, _fmt(v)) for k, v in facts], ["", "value"]))
    parts.append(doctor_section(root))
    diff = config_diff(config) if config else []
    parts.append("<h3>Configuration (keys that differ from the family's defaults)</h3>"
                 + (_table([(k, _fmt(d), _fmt(v)) for k, d, v in diff], ["key", "default", "this run"])
                    if diff else "<p>All defaults.</p>"))
    for title, evaluation in (("Training curves", False), ("Evaluation metrics", True)):
        png = curves_png(records, evaluation)
        if png is not None:
            parts.append(f"<h3>{title}</h3>" + image_tag(png, title))
    timeline = _timeline(root / "samples")
    if timeline:
        figures = "".join(f"<figure>{image_tag(p.read_bytes(), p.stem)}<figcaption>{esc(p.stem)}</figcaption></figure>"
                          for p in timeline)
        parts.append(f'<h3>Samples over training (fixed noise)</h3><div class="grids">{figures}</div>')
    extras = sorted(p for p in (root / "samples").glob("*_latest.png")) if (root / "samples").is_dir() else []
    extras += sorted(root.glob("*.png"))  # GASTeN's histograms and most-ambiguous grid live at the top
    if extras:
        figures = "".join(f"<figure>{image_tag(p.read_bytes(), p.stem)}<figcaption>{esc(p.stem)}</figcaption></figure>"
                          for p in extras)
        parts.append(f'<h3>Figures</h3><div class="grids">{figures}</div>')
    gasten = read_json(root / "gasten_report.json")
    if gasten:
        parts.append("<h3>GASTeN</h3><pre>" + esc(yaml.safe_dump(gasten, sort_keys=False)) + "</pre>")
    env_rows = [(k, _fmt(env.get(k))) for k in ("genlab", "torch", "python", "device", "seed", "started", "platform")]
    env_rows.append(("git", _fmt(env.get("git"))))
    env_rows.append(("resumes", len(env.get("resumes", []))))
    parts.append("<h3>Environment</h3>" + _table(env_rows, ["", "value"]))
    return "\n".join(parts)


def doctor_section(root: Path) -> str:
    """`genlab doctor`'s findings about the run (nothing when it has logged nothing yet)."""
    from genlab.diagnose.doctor import diagnose_run
    from genlab.errors import GenlabError

    try:  # from the run's records alone: a report never loads checkpoints or data
        diagnosis = diagnose_run(root, checkpoints=False)
    except GenlabError:
        return ""
    if diagnosis.healthy:
        return "<h3>Doctor</h3><p>Looks healthy: no failure mode found.</p>"
    rows = [(i, f.name, f"{f.steps[0]}-{f.steps[1]}" if f.steps else "—", f.symptom, f.cause, " ".join(f.overrides))
            for i, f in enumerate(diagnosis.findings, 1)]
    return "<h3>Doctor</h3>" + _table(rows, ["#", "finding", "steps", "symptom", "likely cause", "overrides to try"])


def comparison_table(roots: Sequence[Path]) -> str:
    """One row per run: family, status, steps, parameters, training time, sampling time, best and final metrics."""
    rows = []
    for root in roots:
        s = read_json(Path(root) / "summary.json") or {}
        params = s.get("parameters") or {}
        rows.append((Path(root).name, s.get("family"), run_status(Path(root)), s.get("steps"),
                     _fmt(sum(params.values())) if params else "—", _fmt(s.get("train_seconds")),
                     _fmt(s.get("sample_seconds_per_image")), _fmt(s.get("best")), _fmt(s.get("final_metrics"))))
    return _table(rows, ["run", "family", "status", "steps", "parameters", "train s", "sample s/img", "best",
                         "final metrics"])


def mean_std(cell: Any, digits: int = 4) -> str:
    """A study cell {mean, std, n} as `mean ± std` (the mean alone for one run, — for none)."""
    if not isinstance(cell, dict) or cell.get("mean") is None:
        return "—"
    return f"{cell['mean']:.{digits}g}" + (f" ± {cell['std']:.2g}" if cell.get("std") is not None else "")


def study_section(folder: Path) -> str:
    """A study's tables (study.json: one per phase), a hyper-parameter search (summary.json + trials.csv: the
    Pareto front or history) and a comparison (compare/compare.json and its figures), whichever the folder has."""
    parts = []
    record = read_json(folder / "study.json")
    if record:
        parts.append(f"<h2>Study {esc(record.get('study'))}</h2><p>{esc(record.get('description', ''))}</p>")
        phases: dict[Any, list[dict[str, Any]]] = {}
        for row in record.get("rows", []):
            phases.setdefault(row.get("phase"), []).append(row)
        titles = record.get("phases") or {}
        for phase, rows in phases.items():
            heading = (f"Phase {phase}" + (f" — {titles[phase]}" if phase in titles else "")) if phase else "Variants"
            metric = next((r.get("metric") for r in rows if r.get("metric")), "metric")
            parts.append(f"<h3>{esc(heading)}</h3>" + _table(
                [(r.get("variant"), r.get("because") or "—", mean_std(r.get("final")), mean_std(r.get("best")),
                  _fmt(r.get("compared_fid")), f"{r.get('finished')}/{r.get('runs')}", mean_std(r.get("train_seconds")),
                  r.get("observed"), r.get("motivates") or "—") for r in rows],
                ["variant", "because", f"{metric} (final)", f"best {metric}", "FID (compare)", "runs", "train s",
                 "main observed failure (doctor)", "motivates"]))
    search = read_json(folder / "summary.json") if (folder / "trials.csv").is_file() else None
    if search:
        parts.append(search_section(search, folder))
    compare = read_json(folder / "compare" / "compare.json") or read_json(folder / "compare.json")
    if compare:
        parts.append(comparison_section(compare, (folder / "compare") if (folder / "compare").is_dir() else folder))
    return "\n".join(parts)


def search_section(summary: dict[str, Any], folder: Path) -> str:
    """A hyper-parameter search (`genlab gasten tune-*`): its plot (Pareto front or history) and best trials."""
    states = ", ".join(f"{k.lower()} {v}" for k, v in (summary.get("states") or {}).items() if v)
    parts = [f"<h2>Hyper-parameter search {esc(summary.get('study_name'))}</h2>",
             f"<p>{esc(summary.get('n_trials'))} trials ({esc(states)}); objectives: "
             f"{esc(', '.join(summary.get('directions') or []))}.</p>"]
    for name, title in (("pareto.png", "Pareto front"), ("history.png", "Search history")):
        if (folder / name).is_file():
            parts.append(f"<h3>{title}</h3>" + image_tag((folder / name).read_bytes(), title))
    best = summary.get("pareto_front") or ([summary["best"]] if summary.get("best") else [])
    knee = (summary.get("knee") or {}).get("number")
    if best:
        rows = [(t.get("number"), "knee" if t.get("number") == knee else "",
                 ", ".join(_fmt(v) for v in t.get("values") or []), _fmt(t.get("params"))) for t in best]
        parts.append(f"<h3>{'Pareto front' if summary.get('pareto_front') else 'Best trial'}</h3>"
                     + _table(rows, ["trial", "", "objective values", "parameters"]))
    return "\n".join(parts)


#: Columns of the cross-run comparison table (here and in `genlab compare`'s table.md): (key in its rows, header).
COMPARE_COLUMNS = (("fid", "FID ↓"), ("kid_mean", "KID ↓"), ("is_mean", "IS ↑"), ("precision", "precision ↑"),
                   ("recall", "recall ↑"), ("density", "density ↑"), ("coverage", "coverage ↑"),
                   ("lpips_diversity", "LPIPS diversity ↑"), ("parameters", "params"), ("train_seconds", "train s"),
                   ("sample_seconds_per_image", "sample s/img"))


def compare_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (key, header) comparison columns that at least one row has a value for."""
    return [(k, h) for k, h in COMPARE_COLUMNS if any(r.get(k) is not None for r in rows)]


def comparison_section(record: dict[str, Any], folder: Path) -> str:
    """`genlab compare`'s table, conditions, notes and figures (PNG files beside compare.json, inlined)."""
    rows = record.get("rows", [])
    columns = compare_columns(rows)
    parts = ["<h2>Comparison under identical conditions</h2>",
             _table([(r.get("run"), r.get("family"), *(_fmt(r.get(k)) for k, _ in columns)) for r in rows],
                    ["run", "family", *(h for _, h in columns)]),
             "<h3>Conditions</h3>" + _table([(k, _fmt(v)) for k, v in (record.get("conditions") or {}).items()],
                                            ["", "value"])]
    notes = record.get("notes") or []
    if notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    titles = {"grids": "Samples (same noise seed)", "progression": "Progression over training",
              "interpolation": "Latent interpolation", "worst": "Worst samples (farthest from any real image)"}
    for key, name in (record.get("figures") or {}).items():
        path = folder / Path(str(name)).name
        if path.is_file():
            parts.append(f"<h3>{esc(titles.get(key, key))}</h3>" + image_tag(path.read_bytes(), titles.get(key, key)))
    return "\n".join(parts)


def render_report(roots: Sequence[Path], title: str = "genlab report", study: Path | None = None) -> str:
    """The whole page for these run directories (and a study's or comparison's folder)."""
    body = [f"<h1>{esc(title)}</h1>"]
    if study is not None:
        body.append(study_section(Path(study)))
    if len(roots) > 1:
        body.append("<h2>Comparison</h2>" + comparison_table(roots))
    body += [run_section(Path(root)) for root in roots]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(roots: Sequence[str | Path], out: str | Path, title: str = "genlab report",
                 study: str | Path | None = None) -> Path:
    """Write the report for `roots` (and `study`, a study or comparison folder) to `out`, atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render_report([Path(r) for r in roots], title, None if study is None else Path(study)),
                   encoding="utf-8")
    tmp.replace(out)
    return out
