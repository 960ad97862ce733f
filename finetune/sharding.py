"""Fine-tuning on several processes (experiments/distributed.py): DDP or FSDP.

DDP keeps a whole copy of the model on every device: accelerate wraps it (gloo on CPUs, NCCL on
GPUs) and averages the gradients; LoRA trains on the run's shared base, as in one process.

FSDP shards it: transformers loads the model already sharded across the processes
(`from_pretrained(distributed_config=DistributedConfig(fsdp_size=N))`, which applies FSDP2's
`torch.distributed.fsdp.fully_shard` to each decoder layer and the root, each process reading
only its shard), and TRL's SFTTrainer trains it as it is. LoRA trains on such a sharded copy of
its own (the adapter, added after sharding, is whole on every process and kept equal by the
trainer). Training saves the adapter, or the full weights gathered to the first process; every
process then loads that checkpoint whole, as one process would, to score its share of the eval
rows (finetune/methods.py). CPU offload (`cpu_offload: true`) keeps the shards in host memory
(FSDP2's CPUOffloadPolicy).

Not sharded here: QLoRA (transformers' load-time sharding does not shard bitsandbytes' 4-bit
weights; finetune/config.py refuses it), full fine-tuning with bitsandbytes' 8-bit optimizers
(measured here: "Operator bitsandbytes.optimizer_update_32bit.default does not have a sharding
strategy registered"; LoRA's adapters are not sharded, so they step with them) and fp16 mixed
precision (its loss scaler is not set up for sharded gradients on the trainer's path for
load-time sharded models); each says so in one line. With one process there is nothing to
shard or replicate: it trains alone.
"""

from __future__ import annotations

from experiments.distributed import world_size
from experiments.errors import SetupError
from finetune.config import FinetuneConfig


def resolve_strategy(config: FinetuneConfig) -> str:
    """ "single" with one process, else the config's (fit-resolved) "ddp" or "fsdp"."""
    if world_size() <= 1:
        return "single"
    return "fsdp" if config.strategy == "fsdp" else "ddp"


def check_strategy(config: FinetuneConfig, precision: str, world: int | None = None) -> None:
    """One line for what cannot train as asked in `world` processes (default: this run's),
    before any model loads."""
    world = world or world_size()
    if world > 1 and config.batch_size % world:
        raise SetupError(
            f"finetune batch_size ({config.batch_size}) must be a multiple of the {world} "
            "processes: it is the batch of all of them together"
        )
    sharded = world > 1 and config.strategy == "fsdp"
    if sharded and config.method == "full-ft" and config.optimizer not in ("auto", "adamw"):
        raise SetupError(
            f"full-ft with strategy fsdp and optimizer {config.optimizer}: bitsandbytes' 8-bit "
            "optimizers do not step sharded (DTensor) parameters; use optimizer adamw, or "
            "strategy ddp"
        )
    if sharded and config.cpu_offload and not _gpu():
        raise SetupError(
            "cpu_offload moves FSDP's shards from the GPUs to host memory; without a GPU "
            "they are in host memory already (torch's CPUOffloadPolicy needs an accelerator)"
        )
    if sharded and precision == "fp16":
        raise SetupError(
            "strategy fsdp with fp16 (mixed precision with loss scaling) is not supported here; "
            "use --precision bf16 or fp32, or strategy ddp"
        )


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def record(config: FinetuneConfig) -> dict:
    """What results.json keeps of how training was spread."""
    strategy = resolve_strategy(config)
    return {
        "strategy": strategy,
        "world_size": world_size(),
        "cpu_offload": strategy == "fsdp" and config.cpu_offload,
    }


def load_sharded(checkpoint: str, config: FinetuneConfig, precision: str):
    """The base model, sharded across this run's processes as it loads (FSDP2)."""
    from transformers.distributed import DistributedConfig

    from finetune.base_model import load_model

    sharding = DistributedConfig(fsdp_size=world_size(), fsdp_cpu_offload=config.cpu_offload)
    return load_model(checkpoint, config, precision, distributed_config=sharding)


def is_sharded(model) -> bool:
    """Whether `model` (or the base under its adapter) was sharded as it loaded."""
    return bool(getattr(model, "is_distributed_loading_by_transformers", False))


def load_full_weights(model, folder: str) -> None:
    """A checkpoint's full weights into a model sharded as it loaded: the first process reads
    the safetensors files, FSDP sends each process its shard (torch's set_model_state_dict)."""
    from pathlib import Path

    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from experiments.distributed import is_main

    state: dict = {}
    if is_main():
        for file in sorted(Path(folder).glob("*.safetensors")):
            state.update(load_file(file))
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    set_model_state_dict(model, state, options=options)


def release_weights(model) -> None:
    """Let go of a trained sharded model's weights even while something still references the
    model: its shards are views of the memory-mapped checkpoint, and FSDP2's and the Trainer's
    hooks keep the modules alive from the C++ side, out of reach of the garbage collector
    (measured on the 0.5B bench: 1.0 GB of mapped checkpoint per process stayed through
    scoring). Every parameter, buffer and FSDP2 shard is pointed at an empty tensor, so the
    mapping closes once the last view goes. The model cannot be used afterwards."""
    import torch

    empty = torch.empty(0)
    for module in model.modules():
        get_state = getattr(module, "_get_fsdp_state", None)
        group = get_state()._fsdp_param_group if get_state is not None else None
        for fsdp_param in group.fsdp_params if group is not None else ():
            for attr in ("_sharded_param_data", "_unsharded_param", "sharded_param"):
                if hasattr(fsdp_param, attr):
                    setattr(fsdp_param, attr, empty)
            fsdp_param.all_gather_outputs = []
        for name in list(module._parameters):
            module._parameters[name] = None
        for name in list(module._buffers):
            module._buffers[name] = None
