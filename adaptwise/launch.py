"""`--devices N`: run the command in N processes, one per device, through torchrun's own
launcher (`torch.distributed.run`, in this process: the same as `torchrun --nproc-per-node N
--master-addr 127.0.0.1 --master-port PORT -m adaptwise ...`).

On GPUs each process takes one GPU (NCCL); on a CPU, N processes share the cores (gloo), each
with cores / N threads. Fine-tuning then trains in all of them (DDP or FSDP, `finetune
strategy:`), and scoring is shared by rows (experiments/distributed.py). Started by a launcher
already (torchrun, `accelerate launch`, several nodes), the command runs as it is; `--devices`
must then agree with the launcher's count. The processes' own errors are their one line each;
the exit status is the first failing process's.
"""

from __future__ import annotations

import os
import sys


def add_devices_option(p) -> None:
    p.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="run in N processes, one per GPU (on a CPU: N processes sharing its cores); "
        "fine-tuning trains in all of them (finetune strategy: ddp, fsdp or auto) and the "
        "eval rows are shared among them. Under torchrun or accelerate launch: their count",
    )


def devices(args) -> int | None:
    """The processes this command asks for, checked (one line, exit 2, for a bad count)."""
    from experiments.distributed import launched, world_size
    from experiments.errors import AdaptwiseError

    n = getattr(args, "devices", None)
    if n is not None and n < 1:
        raise AdaptwiseError("--devices must be at least 1")
    if n is not None and launched() and n != world_size():
        raise AdaptwiseError(
            f"--devices {n}, but the launcher started {world_size()} processes; drop --devices "
            "or make the two agree"
        )
    for flag in ("ladder", "sweep", "data_fractions"):
        if (n or world_size()) > 1 and getattr(args, flag, None):
            raise AdaptwiseError(
                f"--{flag.replace('_', '-')} runs in one process; start it without --devices "
                "or a launcher"
            )
    return n


def needs_launch(args) -> bool:
    """Whether this process should start the others rather than run the command itself."""
    from experiments.distributed import launched

    n = devices(args)
    return bool(n and n > 1 and not launched())


def launch(n: int, argv: list[str] | None = None) -> int:
    """Run `adaptwise ARGV` in `n` processes on this machine; their exit status."""
    import logging

    from experiments.errors import AdaptwiseError

    argv = list(sys.argv[1:] if argv is None else argv)
    gpus = _visible_gpus()
    if gpus and n > gpus:
        raise AdaptwiseError(f"--devices {n}: this machine shows {gpus} GPU(s) to this process")
    if not gpus and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torchrun's agent logs each stop and failure; the processes say what went wrong.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # One machine: the processes meet on a free port of the loopback (torchrun's static
    # rendezvous; nothing outside this machine is looked up or reached).
    where = ["--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    args = torchrun.parse_args([*where, "--nproc-per-node", str(n), "-m", "adaptwise", *argv])
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        _rank, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
