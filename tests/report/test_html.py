"""The HTML report: written at the end of a run, self-contained, escaped, and rendered by a real browser.

The browser checks run headless Chromium (Debian package `chromium`, installed by .ci/run): they fail on
page errors or images that did not decode, and check that the screenshot is not blank.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genlab.cli import app
from genlab.report.html import config_diff, render_report
from genlab.runs.records import LOCK_NAME, run_status
from genlab.train import train

NASTY = "<img src=x onerror=alert(1)>"
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.tagName))), true);
window.addEventListener("load", () => {
  const images = [...document.images];
  const bad = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute("data-probe", JSON.stringify({images: images.length, bad, errors: window.__errors}));
});
</script>"""


def chromium() -> str:
    """The headless browser; required in CI, skipped elsewhere when absent."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs the Debian package `chromium`")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def browse(html_path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--virtual-time-budget=5000", *args, html_path.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def reported_run(tiny_config):
    """A tiny run with an HTML-hostile name, trained with the report on (the tiny configs turn it off)."""
    return train(tiny_config(f"name={NASTY}", "logging.report=true", "training.num_epochs=2",
                             "model.latent_dim=4")).run_dir


def test_every_run_ends_with_a_self_contained_report(reported_run):
    page = (reported_run / "report.html").read_text()
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert len(sources) >= 4  # training curves + the grids at steps 4, 8, 12, 16 (capped timeline)
    assert "latent_dim" in page and "finished" in page


def test_the_report_renders_in_a_browser_without_errors_and_is_not_blank(reported_run, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text((reported_run / "report.html").read_text().replace("</title>", "</title>" + PROBE, 1))
    dom = browse(probed, "--dump-dom")
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["images"] >= 4 and probe["bad"] == 0 and probe["errors"] == []
    shot = tmp_path / "shot.png"
    browse(reported_run / "report.html", f"--screenshot={shot}", "--window-size=1000,1400")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and plots, not a blank page


def test_names_and_config_values_are_escaped(reported_run, tmp_path):
    page = (reported_run / "report.html").read_text()
    assert NASTY not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    dom = browse(reported_run / "report.html", "--dump-dom").stdout
    assert "onerror" not in re.sub(r"&lt;img src=x onerror=alert\(1\)&gt;", "", dom)
    assert all(src.startswith("data:") for src in re.findall(r'<img src="([^"]+)"', dom))


def test_config_diff_lists_only_changed_keys(tiny_config):
    cfg = tiny_config("training.lr_g=0.005").to_dict()
    diff = {key: (default, value) for key, default, value in config_diff(cfg)}
    assert diff["training.lr_g"] == (2e-4, 0.005) and "training.lr_d" not in diff


def test_runs_lists_status_from_the_run_directories(tiny_config, tmp_path):
    finished = train(tiny_config("name=done", "training.max_steps=2")).run_dir

    def crash(step, stats):
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        train(tiny_config("name=broken", "training.max_steps=4"), callbacks=(crash,))
    early = train(tiny_config("name=early", "training.max_steps=4"), callbacks=(lambda s, _: os.kill(os.getpid(), 2),))
    assert run_status(finished) == "finished" and run_status(finished.parent / "broken") == "crashed"
    assert run_status(early.run_dir) == "interrupted"
    lock = finished / LOCK_NAME
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    assert run_status(finished) == "running"
    lock.unlink()
    out = CliRunner().invoke(app, ["runs", str(finished.parent)])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines()[1:]}
    assert "finished" in lines["done"] and "crashed" in lines["broken"] and "interrupted" in lines["early"]


def test_report_command_compares_runs(tiny_config, tmp_path):
    first = train(tiny_config("name=a", "training.max_steps=2")).run_dir
    second = train(tiny_config("name=b", "training.max_steps=2", "training.lr_g=1e-3")).run_dir
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(first), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<h2>Comparison</h2>" in page and page.count("<h2>") == 3
    assert render_report([first]).count("<h2>") == 1
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code != 0
