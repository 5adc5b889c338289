"""Train copy-task models for chapter 6 and save their weights (a small checkpoint).

The chapter trains its DNCs itself, in a few hundred steps. What it cannot
afford is training the LSTM baseline to convergence, so it loads long-trained
LSTMs, one per seed, from the package's ``companion/checkpoints/lstm_copy.pt``
(shipped with the package, read with ``companion.dnc.load_checkpoint``), made by:

    python scripts/train_dnc.py --model lstm --steps 20000 --seeds 0 1 2 3 4

The loop is the chapter's, ``companion.dnc.train_copy``: batches of 16
sequences of 6-bit vectors, one length per batch, drawn uniformly from 1..8 by
a generator seeded with ``--data-seed``; Adam with a cosine-decayed learning
rate, gradient norm clipped at 10. ``--model dnc`` trains the chapter's DNC
the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from companion import dnc

BITS = 6
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "companion" / "checkpoints" / "lstm_copy.pt"


def build(kind: str, seed: int) -> torch.nn.Module:
    """The chapter's models: DNC (LSTM controller of 64, 16 x 8 memory, 1 read head) or a 72-unit LSTM."""
    if kind == "dnc":
        return dnc.DNC(BITS + 1, BITS, hidden=64, slots=16, word=8, reads=1, seed=seed)
    if kind == "lstm":
        return dnc.LSTMBaseline(BITS + 1, BITS, hidden=72, seed=seed)
    raise ValueError(f"build: expected kind 'dnc' or 'lstm', got {kind!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dnc", "lstm"], default="lstm")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (cosine decay to 1%% of it)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="one model per seed")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    state_dicts = []
    for seed in args.seeds:
        model = build(args.model, seed)
        start = time.process_time()
        dnc.train_copy(model, args.steps, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                       bits=BITS, seed=args.data_seed, schedule="cosine", eval_every=1000, log_every=5000,
                       progress=False, name=f"{args.model} seed {seed}")
        errors = {n: round(dnc.evaluate_copy(model, n, bits=BITS), 2) for n in (4, 8, 12, 16)}
        print(f"seed {seed}: {time.process_time() - start:.0f} CPU s, bit errors per sequence {errors}", flush=True)
        state_dicts.append({k: v.clone() for k, v in model.state_dict().items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": args.model, "steps": args.steps, "lr": args.lr, "seeds": args.seeds,
                "data_seed": args.data_seed, "state_dicts": state_dicts}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
