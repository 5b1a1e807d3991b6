"""The domain classifier: quick seeded training, its cache, and metrics on its features."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import DomainClassifierExtractor, evaluate, load_domain_classifier, train_domain_classifier
from genlab.metrics.cache import cache_file

pytestmark = pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning")


def stripes(count: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 1×size×size images: horizontal (label 0) or vertical (label 1) stripes with random phase and noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    phase = torch.rand(count, 1, 1, generator=generator) * 6.28
    grid = torch.arange(size).float()
    rows = torch.sin(grid[None, :, None] * 0.9 + phase).expand(count, size, size)
    cols = torch.sin(grid[None, None, :] * 0.9 + phase).expand(count, size, size)
    noise = 0.3 * torch.randn(count, size, size, generator=generator)
    images = torch.where(labels[:, None, None] == 0, rows, cols) + noise
    return ((images.clamp(-1.5, 1.5) + 1.5) * 85).round().to(torch.uint8)[:, None], labels


@pytest.fixture(scope="module")
def trained(session_cache):
    """A classifier trained on 256 stripe images, cached under the key 'stripes' in the session cache."""
    images, labels = stripes(256, seed=0)
    test_images, test_labels = stripes(128, seed=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLAB_CACHE", str(session_cache))
        classifier = train_domain_classifier(images, labels, 2, test_images=test_images, test_labels=test_labels,
                                             epochs=2, batch_size=32, cache_key="stripes", device="cpu")
        yield classifier, images, labels


def test_training_reaches_high_test_accuracy_and_is_cached(trained, monkeypatch: pytest.MonkeyPatch):
    classifier, images, labels = trained
    assert classifier.test_accuracy > 0.9
    assert cache_file("domain", "stripes").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(torch.optim, "Adam", no_training)
    again = train_domain_classifier(images, labels, 2, epochs=2, batch_size=32, cache_key="stripes")
    assert again.test_accuracy == classifier.test_accuracy
    for name, tensor in classifier.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0)


def test_training_is_deterministic(trained):
    classifier, images, labels = trained
    retrained = train_domain_classifier(to_signed(images), labels, 2, epochs=2, batch_size=32, device="cpu")
    for name, tensor in classifier.state_dict().items():
        torch.testing.assert_close(retrained.state_dict()[name], tensor, rtol=0, atol=0)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (the generator's range)."""
    return images.float() / 127.5 - 1


def test_domain_metrics_share_the_metric_code(trained):
    classifier, images, _ = trained
    fake, _ = stripes(150, seed=2)
    result = evaluate(fake, images, ("fid", "kid", "is", "prdc"), extractor="domain", weights="stripes", device="cpu")
    assert set(result) == {"fid_domain", "kid_domain_mean", "kid_domain_std", "is_domain_mean", "is_domain_std",
                           "precision_domain", "recall_domain", "density_domain", "coverage_domain"}
    assert 0 <= result["fid_domain"] < 50 and result["is_domain_mean"] > 1.5

    noise = torch.randint(0, 256, (150, 1, 28, 28), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    worse = evaluate(noise, images, "fid", extractor="domain", weights="stripes")
    assert worse["fid_domain"] > result["fid_domain"]


def test_extractor_adapts_channels_and_size(trained):
    classifier, images, _ = trained
    extractor = DomainClassifierExtractor(classifier, device="cpu")
    larger = torch.nn.functional.interpolate(images[:4].float(), size=32).round().to(torch.uint8)
    rgb_large = larger.expand(-1, 3, -1, -1)
    features, logits = extractor.extract(rgb_large, want_logits=True)
    assert features.shape == (4, 128) and logits.shape == (4, 2)


def test_missing_classifier_is_a_clear_error():
    with pytest.raises(GenlabError, match="train_domain_classifier"):
        load_domain_classifier("never-trained")
    with pytest.raises(GenlabError, match="needs a trained domain classifier"):
        evaluate(torch.zeros(4, 1, 28, 28), None, "is", extractor="domain")
