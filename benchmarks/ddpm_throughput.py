"""genlab's DDPM training against a plain diffusers training loop: images/s of each and their ratio.

Goal: genlab's training images/s >= 0.97 x a plain diffusers loop on the same network.

Both train the `fashion_mnist_ddpm_linear_eps` U-Net (diffusers `UNet2DModel`, built by
`genlab.models.unet.build_unet` with the preset's sizes), batch 64, on the same Fashion-MNIST images
held in memory, in one process, alternating rounds so machine noise hits both alike. Only steady-state
steps are timed (the first `--warmup` steps of each round are excluded).

The plain loop is the inner loop of diffusers' `examples/unconditional_image_generation/train_unconditional.py`
without accelerate: `DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").add_noise`, uniform t,
MSE on ε, `torch.optim.AdamW(lr=2e-4)` (genlab's betas and weight decay; torch's default kernel choice, as
the example), an EMA of the weights after every step (`--plain-ema lerp`: one `torch._foreach_lerp_`, the
cheapest EMA there is; `--plain-ema diffusers`: `diffusers.training_utils.EMAModel` as the example uses it,
with its warm-up) and the loss read back with `.item()` every step (the example logs it every step).

genlab runs `train()` on the preset with its default hooks, as a user runs it: metrics.jsonl + TensorBoard
logging every 50 steps with the per-quarter-of-t losses, EMA, progress bar, checkpoints, summary.json.
Sample grids: the preset draws one every `logging.sample_every` = 500 steps and at the last step; the benchmark
sets `logging.sample_every` above the round length, so the timed window holds no grid (and neither loop draws
one in it); the grid's amortised cost is measured separately and printed at the end. `training.sampling_steps`
is lowered to 20 only to shorten the end-of-run summary's sampling, which happens after the timed window.

    python benchmarks/ddpm_throughput.py [--steps 50] [--warmup 5] [--rounds 3] [--plain-ema lerp|diffusers] \
        [--threads N] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from timing import SteadyBatches, timed_train  # benchmarks/timing.py, beside this script

from genlab.config import load_config
from genlab.data import build_dataset, to_float
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.methods import build_method
from genlab.models import DataShape
from genlab.models.diffusion import unet_levels
from genlab.models.unet import build_unet

PRESET = "fashion_mnist_ddpm_linear_eps"
BATCH = 64


class LerpEMA:
    """θ̄ ← θ̄ + (1 − d)(θ − θ̄) with one multi-tensor lerp, with genlab's / the example's kind of warm-up."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor]) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in params], 1.0 - decay)
        self.updates += 1


def plain_unet(cfg) -> torch.nn.Module:
    """The preset's U-Net, built directly (no genlab method around it)."""
    m = cfg.model
    return build_unet(cfg.data.image_size, 1, m.base_channels, unet_levels(m, cfg.data.image_size),
                      m.layers_per_block, m.attention_resolutions, m.dropout)


def plain_loop(cfg, images: torch.Tensor, steps: int, warmup: int, ema_kind: str) -> float:
    """diffusers' unconditional training loop, minus accelerate; returns timed images/s."""
    torch.manual_seed(0)
    model = plain_unet(cfg).train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    t = cfg.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    params = list(model.parameters())
    if ema_kind == "diffusers":
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=t.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    else:
        ema = LerpEMA(model, t.ema_decay)
    batches = SteadyBatches(images, BATCH, steps, warmup)
    for clean in batches:
        noise = torch.randn(clean.shape)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (BATCH,)).long()
        noisy = scheduler.add_noise(clean, noise, timesteps)
        pred = model(noisy, timesteps).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.step(params)
        _ = loss.detach().item()
    return batches.images_per_second()


def genlab_overrides(data: str, steps: int, warmup: int) -> list[str]:
    return [f"data.name={data}", "data.max_samples=20000", "device=cpu", f"logging.sample_every={steps + warmup + 1}",
            "training.sampling_steps=20"]


def grid_seconds(cfg) -> float:
    """Seconds one training grid costs (the preset's grid sampler on logging.num_sample_images fixed noise)."""
    method = build_method(cfg, DataShape(cfg.data.image_size, 1, 10), torch.device("cpu"))
    noise = method.make_noise(cfg.logging.num_sample_images, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for z in noise.split(cfg.training.batch_size):
        method.sample(z, options=method.grid_options())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default=None,
                        help="folder with the Fashion-MNIST idx files (default: the Debian package's, else synthetic)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both loops (default: torch's choice; 1 is steadier on a busy machine)")
    parser.add_argument("--plain-ema", choices=("lerp", "diffusers"), default="lerp",
                        help="EMA of the plain loop: one foreach lerp (strict) or diffusers' EMAModel (the example)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    have = args.data_root is not None or (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
    data = "fashion-mnist" if have else "synthetic"
    root = [f"data.root={args.data_root}"] if args.data_root else []
    cfg = load_config(PRESET, [f"data.name={data}", *root, "data.max_samples=20000", "data.num_samples=20000",
                               "device=cpu"])
    images = to_float(build_dataset(cfg.data).images)
    load = os.getloadavg()[0]
    print(f"data: {data} {tuple(images.shape)}, preset {PRESET}, batch {BATCH}, {args.steps} timed steps "
          f"(+{args.warmup} warm-up) x {args.rounds} rounds, plain EMA {args.plain_ema}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f}")
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        overrides = [*genlab_overrides(data, args.steps, args.warmup), *root]
        for round_ in range(args.rounds):
            plain.append(plain_loop(cfg, images, args.steps, args.warmup, args.plain_ema))
            ours.append(timed_train(PRESET, overrides, args.steps, args.warmup, out))
            print(f"round {round_ + 1}: plain {plain[-1]:7.1f} img/s   genlab {ours[-1]:7.1f} img/s   "
                  f"ratio {ours[-1] / plain[-1]:.3f}", flush=True)
    p, g = statistics.median(plain), statistics.median(ours)
    ratios = [o / q for o, q in zip(ours, plain, strict=True)]
    print(f"median: plain {p:.1f} img/s, genlab {g:.1f} img/s, ratio genlab/plain = {g / p:.3f} "
          f"(median per-round ratio {statistics.median(ratios):.3f}; goal >= 0.97: "
          f"{'met' if g / p >= 0.97 else 'NOT met'})")
    grid = grid_seconds(cfg)
    every = cfg.logging.sample_every
    share = grid / (grid + every * BATCH / g)
    print(f"not timed above: one training grid ({cfg.training.grid_sampler}, {cfg.training.grid_steps} steps, "
          f"{cfg.logging.num_sample_images} images) takes {grid:.1f} s; every {every} steps that is "
          f"{100 * share:.1f} % of training time. Load average at the end {os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
