"""Domain-classifier metrics: FID, KID, IS, ... on a small CNN trained on the data set itself (28-32 px sets).

ImageNet's Inception knows little about 28-pixel digits or clothes; a classifier trained on the same data
gives features that separate what matters there. `train_domain_classifier` trains one quickly on the CPU
(seeded) and caches it under a key; `DomainClassifierExtractor` plugs it into the shared metric code, and
the results are reported as `fid_domain`, `kid_domain_mean`, `is_domain_mean`, `precision_domain`, ...
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genlab.data.base import convert_channels, to_float
from genlab.errors import CheckpointError, DataError, GenlabError
from genlab.metrics.cache import atomic_save, cache_file
from genlab.metrics.extractor_base import ClassifierFeatureExtractor
from genlab.metrics.features import as_uint8_batch
from genlab.metrics.registry import FEATURE_EXTRACTORS
from genlab.utils import select_device

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = 1
FEATURE_DIM = 128


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


class DomainClassifier(nn.Module):
    """Small CNN for 28-32 px images with 1 or 3 channels: `features` (penultimate layer) and class logits."""

    def __init__(
        self, channels: int, num_classes: int, image_size: int, width: int = 16, feature_dim: int = FEATURE_DIM
    ) -> None:
        super().__init__()
        self.config = {"channels": channels, "num_classes": num_classes, "image_size": image_size,
                       "width": width, "feature_dim": feature_dim}
        self.channels, self.num_classes, self.image_size = channels, num_classes, image_size
        self.feature_dim = feature_dim
        self.test_accuracy: float | None = None
        self.body = nn.Sequential(
            conv_bn_relu(channels, width), conv_bn_relu(width, width), nn.MaxPool2d(2),
            conv_bn_relu(width, 2 * width), conv_bn_relu(2 * width, 2 * width), nn.MaxPool2d(2),
            conv_bn_relu(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N×feature_dim) of images in [-1, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _check_training_data(images: torch.Tensor, labels: torch.Tensor, num_classes: int, what: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"The {what} split has {len(images)} images but {len(labels)} labels; they must match.")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"The {what} labels range over [{int(labels.min())}, {int(labels.max())}] but num_classes={num_classes}; "
            "labels must be 0..num_classes-1."
        )


@torch.inference_mode()
def classifier_accuracy(classifier: DomainClassifier, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 512) -> float:
    """Fraction of uint8 `images` the classifier labels correctly."""
    classifier.eval()
    device = next(classifier.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start : start + batch_size].to(device))
        correct += int((classifier(batch).argmax(1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(1, len(images))


def train_domain_classifier(
    images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, num_classes: int, *,
    test_images: torch.Tensor | np.ndarray | None = None, test_labels: torch.Tensor | np.ndarray | None = None,
    epochs: int = 3, batch_size: int = 128, learning_rate: float = 2e-3, width: int = 16, seed: int = 0,
    cache_key: str | None = None, retrain: bool = False, device: str | torch.device | None = None,
    progress: bool | None = None,
) -> DomainClassifier:
    """Train (seeded, Adam, a few epochs) or load from cache the domain classifier for uint8 or [-1, 1] images.

    With `cache_key`, weights go to (and are later reused from) the cache dir; with a test split the test
    accuracy is logged and kept in `classifier.test_accuracy`.
    """
    images = as_uint8_batch(images, "training images").cpu()
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    _check_training_data(images, labels, num_classes, "training")
    channels, image_size = images.shape[1], images.shape[-1]
    path = cache_file("domain", cache_key) if cache_key else None
    wanted = {"channels": channels, "num_classes": num_classes, "image_size": image_size, "width": width,
              "feature_dim": FEATURE_DIM}
    if path is not None and path.is_file() and not retrain:
        classifier = load_domain_classifier(path)
        if classifier.config == wanted:
            log.info("Domain classifier %r loaded from %s", cache_key, path)
            return classifier
        log.info("Cached domain classifier %r has another configuration; retraining", cache_key)
    device = select_device("auto") if device is None else torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DomainClassifier(channels, num_classes, image_size, width=width).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=learning_rate)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    show = progress if progress is not None else steps > 50
    with tqdm(total=steps, desc="domain classifier", unit="step", disable=not show, leave=False) as bar:
        for _ in range(epochs):
            classifier.train()
            for batch_indices in torch.randperm(len(images), generator=generator).split(batch_size):
                batch = to_float(images[batch_indices].to(device))
                loss = F.cross_entropy(classifier(batch), labels[batch_indices].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    classifier.eval().requires_grad_(False)
    if test_images is not None and test_labels is not None:
        test_uint8 = as_uint8_batch(test_images, "test images")
        test_targets = torch.as_tensor(test_labels, dtype=torch.long).cpu()
        _check_training_data(test_uint8, test_targets, num_classes, "test")
        test_uint8 = convert_channels(test_uint8.cpu(), channels)
        classifier.test_accuracy = classifier_accuracy(classifier, test_uint8, test_targets)
        log.info("Domain classifier test accuracy: %.4f", classifier.test_accuracy)
    if path is not None:
        save_domain_classifier(classifier.cpu(), path)
    return classifier.to(device)


def save_domain_classifier(classifier: DomainClassifier, path: Path) -> None:
    """Write weights, configuration and test accuracy atomically (loadable with weights_only=True)."""
    payload: dict[str, Any] = {"format": CLASSIFIER_FORMAT, "config": classifier.config,
                               "state_dict": classifier.state_dict(), "test_accuracy": classifier.test_accuracy}
    atomic_save(payload, path)


def load_domain_classifier(key_or_path: str | Path) -> DomainClassifier:
    """A saved domain classifier: a file path, or the cache key given to `train_domain_classifier`."""
    path = Path(key_or_path).expanduser()
    if not path.is_file():
        path = cache_file("domain", str(key_or_path))
    if not path.is_file():
        raise GenlabError(
            f"No domain classifier {str(key_or_path)!r} (looked for the file and for the cache key, {path}). Train "
            "one first with genlab.metrics.train_domain_classifier(images, labels, num_classes, "
            f"cache_key={str(key_or_path)!r}) and pass that key as weights=."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        classifier = DomainClassifier(**payload["config"])
        classifier.load_state_dict(payload["state_dict"])
    except (RuntimeError, OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(
            f"The domain classifier file {path} is unreadable or incompatible ({type(err).__name__}: {err}). "
            "Delete it and train again with train_domain_classifier(..., retrain=True)."
        ) from err
    classifier.test_accuracy = payload.get("test_accuracy")
    return classifier.eval().requires_grad_(False)


class DomainClassifierExtractor(ClassifierFeatureExtractor):
    """Penultimate features and class logits of a DomainClassifier, for the shared metric code."""

    name = "domain"
    metric_suffix = "_domain"

    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.classifier.features(inputs)
        return features, self.classifier.head(features) if want_logits else None


@FEATURE_EXTRACTORS.register("domain")
def build_domain_extractor(
    weights: str | Path | DomainClassifier | None = None, download: bool = False,
    device: str | torch.device | None = None, fast: bool | str = False,
) -> DomainClassifierExtractor:
    """The domain extractor for a classifier object, file, or cache key (`download` does not apply)."""
    if weights is None:
        raise GenlabError(
            "extractor='domain' needs a trained domain classifier: pass weights=<the cache_key given to "
            "train_domain_classifier, or a saved classifier file>, or pass extractor=DomainClassifierExtractor(...)."
        )
    classifier = weights if isinstance(weights, DomainClassifier) else load_domain_classifier(weights)
    return DomainClassifierExtractor(classifier, device=device, fast=fast)
