"""One torchrun worker for tests/train/test_ddp.py: runs the jobs named in a JSON file, in order, on every rank.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/train/ddp_worker.py jobs.json

Jobs: {"train": overrides, "crash_step": k (optional)} trains a run (raising on every rank after step
k, like a killed run: no checkpoint is written for the crash); {"cli": args} runs `genlab ARGS` as
`torchrun -m genlab ARGS` would, in this process; {"copy": [src, dst]} copies a run directory (rank 0);
{"fid": run_dir, "out": path} scores the run's
generator with `MeanPoolExtractor` inside `distributed.sharing()` and rank 0 writes the results (with the images each
rank sampled and extracted).
The process group is started once here, so the jobs share it (one launch instead of several).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from genlab import cli, distributed
from genlab.evaluation import RunEvaluator
from genlab.generate import load_run
from genlab.train import load_experiment, train

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a torchrun script: make `tests` importable
from tests.metrics.helpers import MeanPoolExtractor as SharedMeanPool  # noqa: E402


class MeanPoolExtractor(SharedMeanPool):
    """The metrics tests' 4×4 mean-pool extractor, counting the images it saw (each rank extracts its share)."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    @property
    def has_logits(self) -> bool:
        return False

    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, None]:
        self.images += len(inputs)
        return super().network_forward(inputs, False)[0], None


def score(run_dir: str, num_samples: int, extractor: MeanPoolExtractor | None = None,
          sampled: list[int] | None = None) -> dict[str, float]:
    """FID of a run's EMA generator on `num_samples` fixed-noise samples against its data, with MeanPoolExtractor.

    The extraction batch (5) is small so that the samples and the real images span several batches per rank.
    """
    loaded = load_run(run_dir, device="cpu")
    if sampled is not None:  # count the images this process drew
        draw = loaded.method.sample

        def counted(noise, *args, **kwargs):
            sampled.append(len(noise))
            return draw(noise, *args, **kwargs)

        loaded.method.sample = counted
    evaluator = RunEvaluator(loaded.cfg, torch.device("cpu"), ["fid", "kid"], extractor=extractor or MeanPoolExtractor(),
                             batch_size=5)
    return evaluator(loaded.method, num_samples=num_samples).results


def main(jobs_file: str) -> None:
    dist.init_process_group("gloo")
    try:
        for job in json.loads(Path(jobs_file).read_text()):
            if "train" in job:
                crash_step = job.get("crash_step")

                def crash(step: int, stats: dict, crash_step: int | None = crash_step) -> None:
                    if step == crash_step:
                        raise RuntimeError("simulated crash")

                try:
                    train(load_experiment(None, job["train"]), callbacks=(crash,))
                except RuntimeError as err:
                    if "simulated crash" not in str(err):
                        raise
            elif "copy" in job:
                if distributed.is_main():
                    shutil.copytree(*job["copy"])
                dist.barrier()
            elif "cli" in job:
                sys.argv = ["genlab", *job["cli"]]
                try:
                    cli.main()
                except SystemExit as exit_:
                    if exit_.code:
                        raise
            elif "fid" in job:
                extractor, sampled = MeanPoolExtractor(), []
                with distributed.sharing():
                    results = score(job["fid"], job["num_samples"], extractor, sampled)
                images, samples = [None] * distributed.world_size(), [None] * distributed.world_size()
                dist.all_gather_object(images, extractor.images)
                dist.all_gather_object(samples, sum(sampled))
                if distributed.is_main():
                    Path(job["out"]).write_text(json.dumps({"results": results, "images_per_rank": images,
                                                            "samples_per_rank": samples}))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
