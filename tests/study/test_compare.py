"""`genlab compare`: one real set, one noise seed, the same numbers as scoring each run alone; refusals; figures."""

from __future__ import annotations

import json
import re

import pytest
import torch

from genlab.compare import CompareOptions, compare_runs, nearest_real_distance, slerp, write_comparison
from genlab.errors import GenlabError
from genlab.evaluation import dataset_batches
from genlab.generate import generate, load_run
from genlab.methods import SampleOptions
from genlab.metrics import evaluate
from genlab.train import train

OPTIONS = dict(metrics=("fid", "kid", "prdc", "lpips"), num_samples=24, lpips_samples=6, lpips_weights="random",
               worst=4, real_samples=48, device="cpu")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A tiny GAN and a tiny VAE on the same synthetic data (module-scoped: trained once)."""
    from genlab.train import load_experiment
    from tests.conftest import TINY, TINY_VAE

    out = tmp_path_factory.mktemp("compare")
    gan = train(load_experiment(None, [*TINY, f"output_dir={out}", "name=gan", "training.num_epochs=2"])).run_dir
    vae = train(load_experiment(None, [*TINY_VAE, f"output_dir={out}", "name=vae", "training.num_epochs=2"])).run_dir
    return gan, vae


def test_each_row_equals_scoring_that_run_alone_on_the_shared_real_set(two_runs, cheap_features):
    comparison = compare_runs(two_runs, CompareOptions(**OPTIONS))
    for root, row in zip(two_runs, comparison.rows(), strict=True):
        loaded = load_run(root, "last")
        images = generate(loaded.method, 24, seed=0, batch_size=256, options=SampleOptions(ema=True, progress=False))
        # The shared real set is the FIRST run's data; a per-run real set or another noise seed changes these.
        real = dataset_batches(load_run(two_runs[0], "last").cfg.data.model_copy(update={"split": "train"}), 48)
        alone = evaluate(images, list(real), ["fid", "kid", "prdc"], extractor=cheap_features, seed=0)
        for key, value in alone.items():
            assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        assert row["parameters"] == sum(loaded.method.parameter_counts().values())
        assert row["sample_seconds_per_image"] > 0 and row["train_seconds"] > 0
    assert comparison.rows()[0]["lpips_diversity"] > 0
    assert any("random" in note for note in comparison.notes)  # a random LPIPS backbone is said, not hidden


def test_worst_samples_are_the_farthest_from_any_real_image(two_runs, cheap_features):
    comparison = compare_runs(two_runs[:1], CompareOptions(**{**OPTIONS, "metrics": ("fid",)}))
    run = comparison.runs[0]
    real = torch.cat([b for b in dataset_batches(load_run(two_runs[0]).cfg.data, 48)])
    assert run.worst_distance == sorted(run.worst_distance, reverse=True)
    # Brute force: every sample's nearest-real distance; the reported worst are the top ones.
    from genlab.metrics import extract_features

    loaded = load_run(two_runs[0], "last")
    images = generate(loaded.method, 24, seed=0, batch_size=256, options=SampleOptions(ema=True, progress=False))
    fake = extract_features(images, cheap_features).features
    real_f = extract_features(real, cheap_features).features
    brute = torch.cdist(fake.double(), real_f.double()).min(dim=1).values
    assert run.worst_distance == pytest.approx(sorted(brute.tolist(), reverse=True)[:4], rel=1e-5)
    assert nearest_real_distance(real_f[:5], real_f).abs().max() < 1e-3  # a real image is its own neighbour


def test_figures_and_record_are_written(two_runs, tmp_path):
    comparison = compare_runs(two_runs, CompareOptions(**OPTIONS))
    path = write_comparison(comparison, tmp_path / "cmp")
    record = json.loads(path.read_text())
    assert set(record["figures"]) == {"grids", "progression", "interpolation", "worst"}
    assert all((tmp_path / "cmp" / name).is_file() for name in record["figures"].values())
    assert [r["run"] for r in record["rows"]] == ["gan", "vae"]
    assert comparison.runs[0].interpolation.shape[0] == 8 and comparison.runs[1].interpolation is not None
    assert "| gan | gan |" in (tmp_path / "cmp" / "table.md").read_text()


def test_different_data_is_refused_unless_forced(two_runs, tiny_config):
    other = train(tiny_config("name=bigger", "data.image_size=8", "training.max_steps=2")).run_dir
    with pytest.raises(GenlabError, match=r"data.image_size=8.*--force"):
        compare_runs([two_runs[0], other], CompareOptions(**{**OPTIONS, "metrics": ("fid",)}))
    forced = compare_runs([two_runs[0], other], CompareOptions(**{**OPTIONS, "metrics": ("fid",), "force": True}))
    assert len(forced.rows()) == 2 and any("image_size" in n for n in forced.notes)


def test_unknown_metric_names_the_nearest(two_runs):
    with pytest.raises(GenlabError, match="did you mean 'lpips'"):
        compare_runs(two_runs, CompareOptions(**{**OPTIONS, "metrics": ("fid", "lpip")}))


def test_slerp_ends_at_both_codes_and_keeps_the_norm_between_equal_norms():
    a, b = torch.randn(1, 16), torch.randn(1, 16)
    b = b / b.norm() * a.norm()
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    middle = slerp(a, b, 0.5)
    assert middle.norm() == pytest.approx(a.norm().item(), rel=1e-5)  # lerp would shrink it
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-5)


def test_the_comparison_report_renders_in_a_browser_with_every_figure(two_runs, tmp_path):
    from genlab.report.html import write_report
    from tests.report.test_html import PROBE, browse

    out = tmp_path / "cmp"
    write_comparison(compare_runs(two_runs, CompareOptions(**OPTIONS)), out)
    page = write_report(two_runs, out / "report.html", title="compare <b>", study=out).read_text()
    assert "Comparison under identical conditions" in page and "compare &lt;b&gt;" in page
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</title>", "</title>" + PROBE, 1))
    dom = browse(probed, "--dump-dom")
    match = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    # 4 comparison figures + each run's curves and grids; none may fail to decode, no page errors.
    assert probe["images"] >= 8 and probe["bad"] == 0 and probe["errors"] == []


def test_compare_command_prints_the_table_and_explains_missing_lpips_weights(two_runs, tmp_path, run_cli,
                                                                             monkeypatch):
    args = ["compare", *map(str, two_runs), "--n", "24", "--real-samples", "48", "--device", "cpu"]
    code, output = run_cli([*args, "--metrics", "fid,lpips", "--lpips-weights", "random", "--lpips-samples", "6",
                            "--out", str(tmp_path / "c")])
    assert code == 0, output
    assert "| gan | gan |" in output and "| vae | vae |" in output and (tmp_path / "c" / "report.html").is_file()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    code, output = run_cli([*args, "--metrics", "fid,lpips", "--out", str(tmp_path / "d")])
    assert code == 2 and "--lpips-weights PATH" in output and "Traceback" not in output
