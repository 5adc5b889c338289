"""Train chapter 7's Forward-Forward network on MNIST, from IDX files you provide.

Nothing is downloaded. Give the four classic files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
gzipped or not), from wherever you keep them::

    python scripts/train_ff_mnist.py --data ~/data/mnist

The network is ``companion.forward_forward.FFNet`` exactly as the chapter
trains it (sum-of-squares goodness, threshold ``--theta``, softplus loss, each
layer's own Adam), with the label written over the first 10 pixels as in the
paper (MNIST's top row is blank). Two things added for MNIST: *hard
negatives* (``--negatives hard``, the default: each wrong label drawn from the
first layer's goodness for every label, so the negatives are the confusions
the net still makes; ``random`` is the chapter's uniform wrong label) and a
learning rate that falls linearly to lr / epochs over the epochs
(``--lr-schedule linear``, the default). The CPU budget is checked after
each epoch's training, so a run can pass it by one epoch and one test.

Test error is the goodness rule (the label with the highest goodness summed
over layers; ``--skip-first`` leaves layer 1 out, as the paper does for deep
nets), measured every ``--eval-every`` epochs and after the last; with
``--readout`` also the one-pass linear read-out (a softmax classifier
trained on the frozen FF features: a different classifier, reported
separately). The CPU time is this process's user + system time, all threads,
evaluations included: the number to compare across machines. Training stops
after ``--max-cpu-minutes`` of CPU time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from companion import forward_forward as ff  # noqa: E402

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or plain) as a numpy array: images (n, rows, cols) uint8, labels (n,) uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"read_idx: {path} is not an IDX file of unsigned bytes (magic {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"read_idx: {path} declares shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"train_ff_mnist: no {stem}[.gz] in {folder}")


def load(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X_train (n, 784) float32 in [0, 1], y_train int64, X_test, y_test) from the four IDX files."""
    arrays = {key: read_idx(find(folder, stem)) for key, stem in FILES.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise ValueError(f"train_ff_mnist: {split} images {images.shape} and labels "
                             f"{labels.shape} do not match")
        out += [torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0),
                torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


def cpu_seconds() -> float:
    return time.process_time()  # user + system CPU of this process, all its threads


def error(net: ff.FFNet, X: torch.Tensor, y: torch.Tensor, skip_first: bool) -> float:
    wrong = 0
    for start in range(0, len(X), 2000):  # in chunks: ten forward passes of each chunk
        pred = ff.predict(net, X[start:start + 2000], skip_first=skip_first, replace=True)
        wrong += int((pred != y[start:start + 2000]).sum())
    return wrong / len(X)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with the four IDX files")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--lr-schedule", choices=["linear", "constant"], default="linear",
                        help="linear: epoch e of E trains at lr * (E - e + 1) / E")
    parser.add_argument("--negatives", choices=["hard", "random"], default="hard")
    parser.add_argument("--theta", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--skip-first", action="store_true")
    parser.add_argument("--readout", action="store_true", help="also fit the linear read-out")
    parser.add_argument("--eval-every", type=int, default=5, help="test every N epochs (and after the last)")
    parser.add_argument("--max-cpu-minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test = load(args.data)
    if args.limit:
        X_train, y_train = X_train[:args.limit], y_train[:args.limit]
    sizes = [X_train.shape[1], *args.hidden]
    net = ff.FFNet(sizes, theta=args.theta, lr=args.lr, seed=args.seed)
    print(f"FFNet {sizes}, {len(X_train)} training and {len(X_test)} test images, "
          f"{args.threads} threads", flush=True)
    start_cpu, start_wall = cpu_seconds(), time.perf_counter()
    result: dict = {"sizes": sizes, "epochs": [], "lr": args.lr, "lr_schedule": args.lr_schedule,
                    "negatives": args.negatives, "theta": args.theta, "batch_size": args.batch_size,
                    "threads": args.threads, "seed": args.seed}
    for epoch in range(1, args.epochs + 1):
        lr = args.lr * ((args.epochs - epoch + 1) / args.epochs if args.lr_schedule == "linear" else 1.0)
        for layer in net.layers:
            for group in layer.optimizer.param_groups:
                group["lr"] = lr
        ff.train_ff(net, X_train, y_train, epochs=1, batch_size=args.batch_size,
                    replace=True, seed=args.seed * 1000 + epoch, negatives=args.negatives)
        out_of_time = cpu_seconds() - start_cpu > 60 * args.max_cpu_minutes
        last = epoch == args.epochs or out_of_time
        row = {"epoch": epoch, "lr": lr}
        if epoch % args.eval_every == 0 or last:
            row["test_error"] = error(net, X_test, y_test, args.skip_first)
        row["cpu_s"] = round(cpu_seconds() - start_cpu, 1)
        row["wall_s"] = round(time.perf_counter() - start_wall, 1)
        result["epochs"].append(row)
        tested = f"test error {row['test_error']:.2%}" if "test_error" in row else "(not tested)"
        print(f"epoch {epoch:3d}: {tested}  CPU {row['cpu_s']:7.1f} s (wall {row['wall_s']:.0f} s)", flush=True)
        if out_of_time and not epoch == args.epochs:
            print(f"stopping: {row['cpu_s'] / 60:.1f} CPU-minutes used", flush=True)
            break
    result["test_error"] = result["epochs"][-1]["test_error"]
    result["cpu_s"] = result["epochs"][-1]["cpu_s"]
    result["wall_s"] = result["epochs"][-1]["wall_s"]
    if args.readout:
        features = torch.cat([ff.readout_features(net, X_train[i:i + 5000], replace=True)
                              for i in range(0, len(X_train), 5000)])
        readout = ff.fit_linear_readout(features, y_train, steps=300, seed=args.seed)
        with torch.no_grad():
            test_features = ff.readout_features(net, X_test, replace=True)
            result["readout_error"] = float((readout(test_features).argmax(1) != y_test)
                                            .float().mean())
        print(f"linear read-out: test error {result['readout_error']:.2%}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
