"""genlab's VAE training against a plain PyTorch VAE loop: images/s of each and their ratio.

Both train the same network (`genlab.models.vae.VAE` at the fashion_mnist_vae preset's sizes: 28 px,
1 channel, latent 256, base width 32, batch norm) with Adam at the preset's lr and betas, MSE (reduced as
the preset says) + β·KL (β from the preset), batch 64, on the same images held in memory, in one process,
alternating rounds so machine noise hits both alike. genlab runs `train()` on the fashion_mnist_vae preset as a user would:
metrics.jsonl + TensorBoard every `log_every` steps, the prior grid with reconstruction and interpolation
figures every `sample_every` steps, a checkpoint every `checkpoint.every_steps`, the per-step active-units
statistic, and EMA if the preset keeps one (the VAE presets do not: training.ema_decay=0). Only the
progress bar is off, as in an unattended run. The plain loop logs nothing and saves nothing.

Only steady-state steps are timed (the first `--warmup` steps of each round are excluded). By default the
timed window is 500 steps, one whole `sample_every`/`checkpoint.every_steps` period of the preset, so the
grid and checkpoint a user pays for every 500 steps are counted once, at the rate a real run pays them;
with `--steps` below that they fall outside the window and only the per-step and logging costs are timed.

    python benchmarks/vae_throughput.py [--steps 500] [--warmup 20] [--rounds 3]

Data: Fashion-MNIST (first 20000 training images) when genlab can find it (the Debian package's
/usr/share/datasets/fashion-mnist, $GENLAB_DATA or ./data), else 20000 synthetic 28 px images.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
import torch.nn.functional as F
from timing import SteadyBatches, timed_train  # benchmarks/timing.py, beside this script

from genlab.config import load_config
from genlab.data import build_dataset, to_float
from genlab.errors import DataError
from genlab.models.vae import VAE

PRESET = "fashion_mnist_vae"


def plain_loop(cfg, images: torch.Tensor, steps: int, warmup: int) -> float:
    """A textbook VAE loop (encode, reparameterise, decode, MSE + β·KL, Adam); returns timed images/s."""
    torch.manual_seed(0)
    m, t = cfg.model, cfg.training
    batch, beta = t.batch_size, t.beta
    vae = VAE(28, 1, m.latent_dim, m.base_channels, m.num_blocks, m.max_channels, m.norm)
    opt = torch.optim.Adam(vae.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    batches = SteadyBatches(images, batch, steps, warmup)
    for x in batches:
        mu, logvar = vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = vae.decode(z)
        if t.reconstruction_reduction == "sum":  # per-image sum, averaged over the batch (the preset's ELBO)
            rec = F.mse_loss(recon, x, reduction="sum") / len(x)
        else:
            rec = F.mse_loss(recon, x)
        kl = (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)).sum(1).mean()
        loss = rec + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        _ = (rec.item(), kl.item())
    return batches.images_per_second()


def find_data() -> tuple[str, list[str]]:
    """Fashion-MNIST if genlab can load it offline, else synthetic; the overrides that select it."""
    common = ["data.image_size=28", "data.num_samples=20000", "data.max_samples=20000", "device=cpu",
              "logging.progress=false"]
    try:
        build_dataset(load_config(PRESET, ["data.name=fashion-mnist", *common]).data)
        return "fashion-mnist", ["data.name=fashion-mnist", *common]
    except DataError:
        return "synthetic", ["data.name=synthetic", *common]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="timed steps per round (500: one grid+checkpoint)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    data, overrides = find_data()
    cfg = load_config(PRESET, overrides)
    images = to_float(build_dataset(cfg.data).images)
    t = cfg.training
    print(f"data: {data} {tuple(images.shape)}, batch {t.batch_size}, {args.steps} timed steps x {args.rounds} "
          f"rounds, torch {torch.__version__}, {torch.get_num_threads()} threads; genlab hooks: log every "
          f"{cfg.logging.log_every}, grid every {cfg.logging.sample_every}, checkpoint every "
          f"{cfg.checkpoint.every_steps}, EMA {'on' if t.ema_decay > 0 else 'off (preset)'}")
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            plain.append(plain_loop(cfg, images, args.steps, args.warmup))
            ours.append(timed_train(PRESET, overrides, args.steps, args.warmup, out))
            print(f"round {round_ + 1}: plain {plain[-1]:7.1f} img/s   genlab {ours[-1]:7.1f} img/s   "
                  f"ratio {ours[-1] / plain[-1]:.3f}", flush=True)
    p, g = statistics.median(plain), statistics.median(ours)
    print(f"median: plain {p:.1f} img/s, genlab {g:.1f} img/s, ratio genlab/plain = {g / p:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
