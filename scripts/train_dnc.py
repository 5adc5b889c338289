"""Train a copy-task model for chapter 6 and save its weights (a small checkpoint).

The chapter trains its DNC itself, in a few hundred iterations. What it cannot
afford is training the LSTM baseline to convergence, so it loads the long-trained
LSTM from ``book/checkpoints/lstm_copy.pt``, made by:

    python scripts/train_dnc.py --model lstm --iterations 20000 --out book/checkpoints/lstm_copy.pt

The data stream is the chapter's: batches of 16 sequences of 6-bit vectors,
one length per batch, drawn uniformly from 1..8 by a ``torch.Generator`` seeded
with ``--seed``. Adam with a cosine-decayed learning rate, gradient norm clipped
at 10. ``--model dnc`` trains the chapter's DNC the same way.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from companion import dnc
from companion.data import copy_task

BITS = 6


def build(kind: str, seed: int) -> torch.nn.Module:
    """The chapter's models: DNC (LSTM controller of 64, 16 x 8 memory, 1 read head) or a 72-unit LSTM."""
    if kind == "dnc":
        return dnc.DNC(BITS + 1, BITS, hidden_size=64, slots=16, word=8, reads=1, seed=seed)
    if kind == "lstm":
        return dnc.LSTMBaseline(BITS + 1, BITS, hidden_size=72, seed=seed)
    raise ValueError(f"build: expected kind 'dnc' or 'lstm', got {kind!r}")


def evaluate(model: torch.nn.Module, length: int, batch: int = 64, seed: int = 1000) -> float:
    """Mean bit errors per sequence on the chapter's fixed test batch for one length."""
    x, y = copy_task(batch, length, bits=BITS, generator=torch.Generator().manual_seed(seed + length))
    with torch.no_grad():
        return dnc.bit_errors(model(x)[:, -length:], y).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dnc", "lstm"], default="lstm")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (cosine decay to 1%% of it)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("book/checkpoints/lstm_copy.pt"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = build(args.model, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * it / args.iterations))
    )
    start = time.perf_counter()
    for it in range(1, args.iterations + 1):
        length = int(torch.randint(1, args.max_length + 1, (1,), generator=generator))
        x, y = copy_task(args.batch, length, bits=BITS, generator=generator)
        loss = F.binary_cross_entropy_with_logits(model(x)[:, -length:], y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        if it % 1000 == 0 or it == args.iterations:
            errors = {n: round(evaluate(model, n), 2) for n in (4, 8, 12, 16)}
            print(f"iteration {it}: {time.perf_counter() - start:.0f} s, bit errors per sequence {errors}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"model": args.model, "iterations": args.iterations, "lr": args.lr, "seed": args.seed,
                "state_dict": state}, args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
