"""Data-parallel Levenberg-Marquardt with torch.distributed: every rank fits its shard.

What it shows
    ``dict_minimize.torch_api.fit`` started by ``torchrun``: each process holds its own shard
    of the samples (here ``np.array_split`` of one data set, so the shards differ in size by
    one sample), forms ``JᵀJ`` and ``Jᵀe`` of its shard, and the partial sums, the MSEs and
    the normalization ranges are all-reduced (gloo on CPU, NCCL on GPU). Every
    accept/reject and damping decision comes from all-reduced values, so the ranks end with
    bit-identical weights, which the script checks by gathering them. The network is issue
    8's case B: a 6-12-10-8-1 tanh MLP on samples of the 6-D Rosenbrock function.

How to run
    torchrun --nproc_per_node=2 examples/distributed_torch.py           # 2 CPU processes, gloo
    torchrun --nproc_per_node=2 examples/distributed_torch.py --quick   # a few seconds
    python examples/distributed_torch.py                                 # one process, same fit
    On GPUs (one process per GPU, NCCL):
    torchrun --nproc_per_node=8 examples/distributed_torch.py --samples 1000000
    Across machines: torchrun --nnodes=N --node_rank=i --rdzv_endpoint=HOST:PORT ...

What to expect
    Rank 0 prints the training and validation MSE per few epochs and the time per epoch;
    the one-process run prints the same MSEs to about 12 digits (the sums are added in
    another order), and ``ranks agree: True``. A rank whose residuals raise stops every rank
    with ``DistributedError`` naming it; a rank that dies stops the others after the
    ``timeout`` given to ``init_process_group`` (5 minutes here).
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from _common import example_parser, limit_threads

from dict_minimize.torch_api import fit


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = example_parser(__doc__)
    parser.add_argument("--samples", type=int, default=10_000, help="training samples (10,000)")
    parser.add_argument("--epochs", type=int, default=50, help="LM iterations at most (50)")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    samples, epochs = (2_000, 8) if args.quick else (args.samples, args.epochs)

    started_group = "RANK" in os.environ and not dist.is_initialized()
    if started_group:  # under torchrun: one process per rank
        use_gpu = torch.cuda.is_available()
        dist.init_process_group(
            "nccl" if use_gpu else "gloo", timeout=datetime.timedelta(minutes=5)
        )
        if use_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda") if torch.cuda.is_available() and world > 1 else "cpu"

    # The whole data set, generated alike everywhere; a real job would read its shard only.
    rng = np.random.default_rng(args.seed)
    x_all = rng.uniform(-2.0, 2.0, (samples + samples // 5, 6))
    y_all = rosenbrock(x_all).reshape(-1, 1)
    train, val = np.arange(samples), np.arange(samples, len(x_all))
    mine = np.array_split(train, world)[rank]
    mine_val = np.array_split(val, world)[rank]

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float64, device=device)

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.Tanh(),
        torch.nn.Linear(12, 10), torch.nn.Tanh(),
        torch.nn.Linear(10, 8), torch.nn.Tanh(),
        torch.nn.Linear(8, 1),
    ).to(device=device, dtype=torch.float64)  # fmt: skip

    start = time.perf_counter()
    out = fit(
        model,
        tensor(x_all[mine]),
        tensor(y_all[mine]),
        val_data=(tensor(x_all[mine_val]), tensor(y_all[mine_val])),
        epochs=epochs,
        normalize=True,
        max_fail=1000,
    )
    seconds = time.perf_counter() - start

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    agree = True
    if world > 1:  # compare every rank's weights with rank 0's, bit for bit
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        agree = all(torch.equal(g, gathered[0]) for g in gathered)
    if rank == 0:
        print(f"{world} process(es), {samples} samples (this rank: {len(mine)}), {device}")
        print("epoch   train MSE     val MSE")
        history = out.history
        last = len(history["loss"]) - 1
        for epoch in sorted({*range(0, last, max(1, last // 8)), last}):
            print(f"{epoch:5d}  {history['loss'][epoch]:.6e}  {history['val_loss'][epoch]:.6e}")
        print(f"{out.stop_reason}; {seconds / max(1, last):.3f} s per epoch")
        print(f"ranks agree: {agree}")
    if started_group:
        dist.destroy_process_group()
    return {
        "first_mse": out.history["loss"][0],
        "train_mse": out.history["loss"][-1],
        "val_mse": out.history["val_loss"][-1],
        "agree": float(agree),
        "world": float(world),
    }


if __name__ == "__main__":
    main()
