"""Chapter 5's ring comparison at about 16 times the chapter's budget.

The chapter trains the plain GAN, the minibatch standard deviation GAN and
PacGAN on the ring of eight Gaussians for 1,500 steps of batch 128 with two
hidden layers, which fits in its minute of CPU. This script runs the same
comparison with 3,000 steps, batches of 512 and three hidden layers of 128
(twice the steps, four times the batch, twice the multiply-adds per sample),
for as many seeds as you ask, five seeds at a time as one batched model (seed
i trains exactly as it would alone)::

    python scripts/ring_gan_budget.py --seeds 0-14 --json ring.json

Everything else is the chapter's: non-saturating loss, Adam (0.5, 0.999) at
1e-3 for both networks decayed linearly to zero, 2-D noise, discriminator
seeds 100 + s, coverage counted by ``mode_coverage`` on 2,500 samples from a
fixed noise batch. It takes 1.7 to 2.8 CPU-minutes per setting and five seeds
on one core (``--threads 1``, the default). No data are downloaded: the ring is generated.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from companion.data import ring_centers, ring_of_gaussians  # noqa: E402
from companion.gan import make_discriminator, make_generator, mode_coverage, train_gan  # noqa: E402

STD = 0.02  # the chapter's ring: 8 Gaussians of std 0.02 on a circle of radius 2
SETTINGS = {"plain": {}, "minibatch std": {"minibatch_std": True}, "PacGAN (m = 2)": {"pack": 2}}


def seed_list(text: str) -> list[int]:
    """'0-9' or '0,3,5' as a list of seeds."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds: expected '0-9' or '0,1,2', got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds: expected non-negative seeds, got {text!r}")
    return seeds


def run(setting: str, seeds: list[int], steps: int, batch_size: int, depth: int) -> dict:
    """Train one setting for ``seeds`` as one batched model; modes covered at 8 snapshots, per seed."""
    G = make_generator(2, 2, hidden=128, depth=depth, seeds=seeds)
    D = make_discriminator(2, hidden=128, depth=depth, seeds=[100 + s for s in seeds], **SETTINGS[setting])
    snapshots = tuple(steps * k // 8 for k in range(1, 9))
    start = time.process_time()
    history = train_gan(G, D, lambda n, g: ring_of_gaussians(n, std=STD, generator=g), steps=steps,
                        latent_dim=2, batch_size=batch_size, lr_g=1e-3, lr_d=1e-3, lr_decay=True,
                        snapshot_at=snapshots, seed=seeds, progress=False)
    cpu = time.process_time() - start
    centers = ring_centers(8, radius=2.0)
    coverage = {s: [mode_coverage(x, centers, std=STD) for x in history.snapshots[s]] for s in snapshots}
    return {"seeds": seeds, "cpu_s": round(cpu, 1),
            "modes": {str(s): [c.modes for c in coverage[s]] for s in snapshots},
            "high_quality": [round(c.high_quality, 3) for c in coverage[steps]]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=seed_list, default=seed_list("0-4"), help="e.g. 0-9 or 0,2,4")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers of 128 units in G and in D")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; expected some of {list(SETTINGS)}")
    if args.steps < 8 or args.batch_size < 2 or args.depth < 1:
        parser.error("expected --steps >= 8, --batch-size >= 2, --depth >= 1")
    torch.set_num_threads(args.threads)
    result = {"steps": args.steps, "batch_size": args.batch_size, "depth": args.depth, "hidden": 128,
              "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
              "runs": {}}
    for setting in settings:
        parts = [run(setting, args.seeds[i:i + 5], args.steps, args.batch_size, args.depth)
                 for i in range(0, len(args.seeds), 5)]
        merged = {"seeds": [s for p in parts for s in p["seeds"]],
                  "cpu_s": round(sum(p["cpu_s"] for p in parts), 1),
                  "modes": {k: [m for p in parts for m in p["modes"][k]] for k in parts[0]["modes"]},
                  "high_quality": [q for p in parts for q in p["high_quality"]]}
        result["runs"][setting] = merged
        print(f"{setting:>15}: modes at the end {merged['modes'][str(args.steps)]}, "
              f"high quality {merged['high_quality']}, {merged['cpu_s']:.0f} CPU s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
