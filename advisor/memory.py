"""Peak-memory estimator for inference, full fine-tuning, LoRA and QLoRA (pure arithmetic; what
would make a method fit is in advisor/fit_suggestions.py).

The estimate is the sum of six parts, in bytes:

- weights: every parameter at the precision's width; QLoRA keeps the decoder projections in NF4
  (0.5 byte per parameter plus double-quantised block constants) and the embeddings, lm_head,
  norms and biases at the precision's width. LoRA adapters are float32 (peft's default).
- gradients: one per trainable parameter, at the trained weights' width (only the largest
  parameter's at a time with the optimizer step fused into the backward pass).
- optimizer state: per trainable parameter (table below). Paged optimizers (bitsandbytes) keep
  their state in unified memory that spills to the host, so on a GPU it is reported apart
  (`offloaded`) and not counted in the total.
- activations: what autograd keeps for the backward pass, counted tensor by tensor for a
  Llama-style layer (below); with gradient checkpointing, each layer's input plus one layer
  recomputed in full.
- logits: batch x seq x vocab elements; the loss runs in float32, and at the peak of its
  backward the logits, their log-softmax and two gradients are alive (16 bytes per element).
- overhead: on a GPU the CUDA context (0.5 GB, outside PyTorch's allocator statistics),
  5% allocator slack and, for QLoRA, the 16-bit copy of the largest projection that
  dequantisation makes in the forward and backward passes. On a CPU, where the figure is
  process RSS: the process itself (python, torch, transformers, peft and a tokenizer) and the
  freed transients that malloc keeps (both measured on this repository's machine).

Several devices (`devices` N, one process each), per device:

- DDP keeps a whole copy of the model, its gradients and its optimizer state on every device,
  and a second copy of the gradients in its all-reduce buckets (PyTorch's DDP copies each
  gradient into a bucket unless `gradient_as_bucket_view`, which accelerate leaves off).
- FSDP (FSDP2, `fully_shard` per decoder layer and on the root) keeps 1/N of the parameters,
  gradients and optimizer state. What it gathers comes on top: two decoder layers' full
  parameters at a time (the one computing and the one prefetched), the root's (embeddings,
  lm_head and final norm, which stay gathered from the first forward to the end of backward),
  and, when every weight trains, one layer's full gradients before they are reduce-scattered.
  LoRA adapters, added after sharding, are whole on every device.
- FSDP's CPU offload keeps the sharded parameters, gradients and optimizer state in host memory
  (the optimizer steps there): the device holds what is gathered, the activations and the
  logits; the host part is reported apart (`offloaded`), per device.
- Activations and logits are per device: `batch` is the micro-batch of one device.

Bytes per parameter ("Transformer Math 101", EleutherAI):

| precision | weights | gradients | AdamW state | 8-bit AdamW state | activations |
|---|---|---|---|---|---|
| fp32 | 4 | 4 | 8 (m, v) | 2 | 4 |
| bf16 (pure, as torchtune and LitGPT `bf16-true` train) | 2 | 2 | 4 (m, v in bf16) | 2 | 2 |
| fp16 (mixed: fp32 master weights in the optimizer) | 2 | 2 | 12 (master, m, v) | 6 | 2 |

Activations kept per token in one layer (elements; x is the layer input): the first norm's
input x (h; float32 in a 16-bit run, where RMSNorm upcasts), the normed x (h) when q/k/v need
their input, q, k, v after RoPE and the attention output (kept by SDPA's backward: 2q + 2kv),
the o_proj input (q) when it needs it, the mid-layer residual (h, float32 in 16-bit runs), the
second normed x (h) when gate/up need it, gate, SiLU(gate) and up (3i), and the down_proj
input (i) when it needs it. A projection needs its input when its weight trains (full
fine-tuning), when LoRA targets it, or under QLoRA (bitsandbytes' 4-bit matmul saves it).
LoRA dropout keeps a dropped copy of the input plus a 1-byte mask per targeted projection.
Eager attention adds the softmax probabilities (heads x seq x seq per sequence);
memory-efficient SDPA (the default) keeps none.

A chunked loss (torchtune's CEWithChunkedOutputLoss) keeps the logits at the compute width and
upcasts them to float32 chunk by chunk: the width plus the float32 log-softmax autograd saves
per element, with one chunk's gradient at a time (of 8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from advisor.architectures import ModelShape, lora_target_names
from experiments.errors import AdaptwiseError

METHODS = ("inference", "full-ft", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit")
PRECISIONS = ("bf16", "fp32", "fp16")
DEVICES = ("gpu", "cpu")
ATTENTION = ("sdpa", "eager")
STRATEGIES = ("ddp", "fsdp")
GB = 1e9
# NF4 with double quantisation (QLoRA paper): 4 bits per weight, an 8-bit absmax per block of
# 64 and a float32 constant per 256 blocks.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
LOGIT_BYTES = 16  # float32 logits, log-softmax and two gradients at the loss-backward peak
LOSS_CHUNKS = 8  # torchtune's CEWithChunkedOutputLoss
FSDP_PREFETCH_LAYERS = 2  # decoder layers gathered at once: the one computing, the next
LORA_PARAM_BYTES = 4  # peft keeps adapters in float32
CUDA_CONTEXT_BYTES = 0.5 * GB
ALLOCATOR_SLACK = 0.05
# RSS of `import torch, transformers, peft` plus a loaded tokenizer, measured with
# bench/bench_estimator_calibration.py on this repository's 2-core CI machine (509-511 MB).
CPU_PROCESS_BYTES = 0.51 * GB
# On a CPU, glibc's malloc keeps freed blocks under its mmap threshold (up to 32 MB) in the
# heap, so RSS also holds the forward and backward passes' transient tensors. Measured with the
# bench script: 0.45x (full fine-tuning) to 0.64x (LoRA) of the saved activations.
CPU_ALLOCATOR_RETENTION = 0.5

_WIDTH = {"fp32": 4, "bf16": 2, "fp16": 2}
_ADAM = {"fp32": 8, "bf16": 4, "fp16": 12}
_ADAM_8BIT = {"fp32": 2, "bf16": 2, "fp16": 6}


@dataclass(frozen=True)
class TrainSetup:
    """Everything besides the model's shape that changes peak memory."""

    method: str = "lora"
    batch: int = 1
    seq: int = 512
    optimizer: str = "adamw"
    precision: str = "bf16"
    gradient_checkpointing: bool = False
    lora_r: int = 16
    lora_targets: str | tuple[str, ...] = "all-linear"  # a LORA_TARGETS preset or module names
    lora_dropout: float = 0.05  # peft's usual value, and our fine-tuning default
    device: str = "gpu"
    optimizer_in_backward: bool = False  # torchtune's optimizer_in_bwd: step per parameter
    attention: str = "sdpa"  # "eager" materialises the attention probabilities
    devices: int = 1  # processes training together, one per device
    strategy: str = "ddp"  # ddp: a whole copy per device; fsdp: sharded N ways
    cpu_offload: bool = False  # fsdp: sharded state in host memory, the optimizer steps there
    chunked_loss: bool = False  # logits at the compute width, float32 loss chunk by chunk

    def validate(self) -> None:
        """Raise AdaptwiseError (one line) for a setting the estimator does not know."""
        choices = {
            "method": METHODS,
            "optimizer": OPTIMIZERS,
            "precision": PRECISIONS,
            "device": DEVICES,
            "attention": ATTENTION,
            "strategy": STRATEGIES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise AdaptwiseError(
                    f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}: "
                    f"choose from {', '.join(allowed)}"
                )
        lora_target_names(self.lora_targets)
        for name in ("batch", "seq", "lora_r", "devices"):
            if getattr(self, name) < 1:
                raise AdaptwiseError(f"{name.replace('_', ' ')} must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            raise AdaptwiseError("lora dropout must be in [0, 1)")
        if self.cpu_offload and self.strategy != "fsdp":
            raise AdaptwiseError("cpu offload is FSDP's: it needs strategy fsdp")
        if self.cpu_offload and self.device == "cpu":
            raise AdaptwiseError("cpu offload moves shards off a GPU: on a CPU they are in RAM")
        if self.strategy == "fsdp" and not self.trains:
            raise AdaptwiseError("strategy fsdp shards training; inference is estimated per device")

    @property
    def trains(self) -> bool:
        return self.method != "inference"

    @property
    def uses_lora(self) -> bool:
        return self.method in ("lora", "qlora")

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one training step (or one forward pass), by component, in bytes."""

    model: str
    setup: TrainSetup
    total_params: int
    trainable_params: int
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    logits: int
    overhead: int
    # Paged optimizer state that lives in host-spillable memory; with FSDP's CPU offload, this
    # device's share of the parameters, gradients and optimizer state held in host memory.
    offloaded: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def breakdown(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer_state": self.optimizer_state,
            "activations": self.activations,
            "logits": self.logits,
            "overhead": self.overhead,
        }

    @property
    def total_bytes(self) -> int:
        return sum(self.breakdown().values())

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    def as_dict(self) -> dict:
        """A JSON-ready breakdown (bytes and GB) with the settings it assumed."""
        return {
            "model": self.model,
            "settings": asdict(self.setup),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "bytes": {**self.breakdown(), "offloaded": self.offloaded, "total": self.total_bytes},
            "gb": {k: round(v / GB, 3) for k, v in self.breakdown().items()},
            "offloaded_gb": round(self.offloaded / GB, 3),
            "total_gb": round(self.total_gb, 3),
            "notes": list(self.notes),
        }


def lora_params(shape: ModelShape, r: int, targets: str | tuple[str, ...] = "all-linear") -> int:
    """Trainable LoRA parameters: r x (in + out) per targeted projection per layer."""
    shapes = shape.linear_shapes()
    return shape.num_layers * sum(r * sum(shapes[m]) for m in lora_target_names(targets))


def estimate(
    shape: ModelShape,
    method: str = "lora",
    batch: int = 1,
    seq: int = 512,
    optimizer: str = "adamw",
    precision: str = "bf16",
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    lora_targets: str | tuple[str, ...] = "all-linear",
    device: str = "gpu",
    **options,
) -> MemoryEstimate:
    """Peak memory of `method` on `shape`; `options` are the other TrainSetup fields."""
    setup = TrainSetup(
        method=method,
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        lora_r=lora_r,
        lora_targets=lora_targets,
        device=device,
        **options,
    )
    return estimate_setup(shape, setup)


def estimate_setup(shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """The estimate for a ready TrainSetup (see the module docstring for the model)."""
    setup.validate()
    width = _WIDTH[setup.precision]
    notes: list[str] = []

    # Weights.
    if setup.method == "qlora":
        # The non-projection weights stay at the run's width (adaptwise does not upcast them).
        weights = shape.linear_params * NF4_BYTES + shape.other_params * width
        notes.append(
            "NF4 base (double quantisation); embeddings, lm_head and norms at the run's precision"
        )
    else:
        weights = shape.total_params * width
    adapters = lora_params(shape, setup.lora_r, setup.lora_targets) if setup.uses_lora else 0

    trainable, grad_width, gradients, optimizer_state, offloaded = _training_state(
        shape, setup, width, adapters, notes
    )
    gathered_layers = 0.0
    if setup.sharded:
        weights, gradients, optimizer_state, host, gathered_layers = _sharded(
            shape, setup, weights, gradients, optimizer_state
        )
        offloaded += host
        notes.append(
            f"FSDP over {setup.devices} devices, per device: 1/{setup.devices} of the "
            "parameters, gradients and optimizer state, plus two gathered layers and the root"
            + ("; the shards in host memory (CPU offload), reported as offloaded" if host else "")
        )
    elif setup.devices > 1 and setup.trains:
        gradients += trainable * grad_width
        notes.append(
            f"DDP over {setup.devices} devices: a whole copy on each, and a second copy of the "
            "gradients in the all-reduce buckets"
        )
    weights += adapters * LORA_PARAM_BYTES

    activations = _activations(shape, setup)
    logits = _logits(shape, setup, width, gathered_layers)
    overhead = _overhead(shape, setup, weights + gradients + optimizer_state, activations, logits)
    if setup.device == "cpu":
        notes.append("CPU: process RSS, with python, torch and transformers themselves")
    return MemoryEstimate(
        model=shape.name,
        setup=setup,
        total_params=shape.total_params,
        trainable_params=trainable,
        weights=int(weights),
        gradients=int(gradients),
        optimizer_state=int(optimizer_state),
        activations=int(activations),
        logits=int(logits),
        overhead=int(overhead),
        offloaded=int(offloaded),
        notes=tuple(notes),
    )


def _training_state(shape: ModelShape, setup: TrainSetup, width: int, adapters: int, notes):
    """(trainable parameters, gradient width, gradient bytes, optimizer-state bytes, bytes
    offloaded to the host) before any sharding."""
    if not setup.trains:
        trainable, grad_width, state_per_param = 0, 0, 0.0
    elif setup.uses_lora:
        trainable, grad_width = adapters, LORA_PARAM_BYTES
        state_per_param = {"adamw": 8, "adamw-8bit": 2, "paged-adamw-8bit": 2}[setup.optimizer]
    else:
        trainable, grad_width = shape.total_params, width
        table = _ADAM if setup.optimizer == "adamw" else _ADAM_8BIT
        state_per_param = table[setup.precision]
    gradients = trainable * grad_width
    if setup.optimizer_in_backward and setup.trains:
        gradients = _largest_trainable(shape, setup) * grad_width
        notes.append("optimizer step fused into backward: one parameter's gradient at a time")
    optimizer_state = trainable * state_per_param
    offloaded = 0
    if setup.optimizer.startswith("paged") and setup.device == "gpu" and setup.trains:
        offloaded, optimizer_state = optimizer_state, 0
        notes.append("paged optimizer state spills to host memory; reported as offloaded")

    return trainable, grad_width, gradients, optimizer_state, offloaded


def _logits(shape: ModelShape, setup: TrainSetup, width: int, gathered_layers: float) -> float:
    """The logits' bytes at the loss (training) or the last step (inference)."""
    tokens = setup.batch * setup.seq
    # Inference: the logits plus their float32 copy (none needed when they are float32 already).
    logit_bytes = LOGIT_BYTES if setup.trains else width + (4 if width < 4 else 0)
    if setup.trains and setup.chunked_loss:
        logit_bytes = width + 4 + 2 * 4 / LOSS_CHUNKS
    logits = tokens * shape.vocab_size * logit_bytes
    if gathered_layers:
        # The logits live until the loss's backward; the layers are gathered again only after
        # it, from the last layer's backward on: the larger of the two counts.
        logits = max(logits - gathered_layers, 0)
    return logits


def _overhead(shape: ModelShape, setup: TrainSetup, state: float, activations, logits) -> float:
    """What the device holds beyond tensors: the CUDA context, the allocator's slack and
    QLoRA's dequantised projection on a GPU; the process itself and malloc's retained
    transients on a CPU. `state`: weights, gradients and optimizer state."""
    if setup.device == "gpu":
        dequant = 0
        if setup.method == "qlora":
            dequant = 2 * max(a * b for a, b in shape.linear_shapes().values()) * 2
        subtotal = state + activations + logits
        return CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK * subtotal + dequant
    return CPU_PROCESS_BYTES + CPU_ALLOCATOR_RETENTION * activations


def _sharded(
    shape: ModelShape, setup: TrainSetup, weights: float, gradients: float, state: float
) -> tuple[float, float, float, float, float]:
    """(weights, gradients, optimizer state, host bytes, the gathered layers' weights and
    gradients) on one of `setup.devices` FSDP devices, from the whole model's base weights,
    gradients and optimizer state (module docstring). LoRA's adapters, their gradients and
    optimizer state are not sharded."""
    n = setup.devices
    width = _WIDTH[setup.precision]
    layer_params = shape.linear_params_per_layer + shape.small_params_per_layer
    if setup.method == "qlora":
        layer = shape.linear_params_per_layer * NF4_BYTES + shape.small_params_per_layer * width
    else:
        layer = layer_params * width
    root = (shape.embedding_params + shape.lm_head_params + shape.hidden_size) * width
    layers = FSDP_PREFETCH_LAYERS * layer
    gathered = layers + root
    if setup.uses_lora:  # replicated: only the frozen base is sharded
        shard_grads, layer_grads, shard_state = gradients, 0.0, state
    else:
        shard_grads = gradients / n
        layer_grads = layer_params * _WIDTH[setup.precision]  # before its reduce-scatter
        shard_state = state / n
    layers += layer_grads
    if setup.cpu_offload:
        host = weights / n + (0 if setup.uses_lora else shard_grads + shard_state)
        if setup.uses_lora:
            return gathered, gradients, state, host, layers
        return gathered, layer_grads, 0.0, host, layers
    return weights / n + gathered, shard_grads + layer_grads, shard_state, 0.0, layers


def _largest_trainable(shape: ModelShape, setup: TrainSetup) -> int:
    if setup.uses_lora:
        shapes = shape.linear_shapes()
        return max(setup.lora_r * sum(shapes[m]) for m in lora_target_names(setup.lora_targets))
    largest_linear = max(a * b for a, b in shape.linear_shapes().values())
    return max(shape.embedding_params, shape.lm_head_params, largest_linear)


def layer_activation_bytes(shape: ModelShape, setup: TrainSetup) -> float:
    """Bytes autograd keeps per token in one decoder layer (see the module docstring)."""
    width = _WIDTH[setup.precision]
    norm_width = 4 if width < 4 else width  # RMSNorm upcasts 16-bit inputs to float32
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.q_dim, shape.kv_dim
    targets = set(lora_target_names(setup.lora_targets)) if setup.uses_lora else set()
    everything = setup.method in ("full-ft", "qlora")

    def needs(*modules: str) -> bool:
        return everything or any(m in targets for m in modules)

    elements = (
        (h if needs("q_proj", "k_proj", "v_proj") else 0)
        + 2 * q
        + 2 * kv
        + (q if needs("o_proj") else 0)
        + (h if needs("gate_proj", "up_proj") else 0)
        + 3 * i
        + (i if needs("down_proj") else 0)
    )
    total = elements * width + 2 * h * norm_width
    if setup.uses_lora and setup.lora_dropout > 0:
        shapes = shape.linear_shapes()
        total += sum(shapes[m][0] * (width + 1) for m in targets)
    return total


def _activations(shape: ModelShape, setup: TrainSetup) -> float:
    width = _WIDTH[setup.precision]
    tokens = setup.batch * setup.seq
    if not setup.trains:
        # A forward pass keeps the KV cache and one layer's working set at a time.
        kv_cache = 2 * shape.num_layers * tokens * shape.kv_dim * width
        working = tokens * (4 * shape.hidden_size + 3 * shape.intermediate_size) * width
        return kv_cache + working
    per_layer = tokens * layer_activation_bytes(shape, setup)
    if setup.attention == "eager":
        probs_width = 4 + (width if width < 4 else 0)  # float32 softmax, cast back in 16-bit
        per_layer += setup.batch * shape.num_heads * setup.seq**2 * probs_width
    final_norm = tokens * shape.hidden_size * 4
    if setup.gradient_checkpointing:
        kept_inputs = shape.num_layers * tokens * shape.hidden_size * width
        return kept_inputs + per_layer + final_norm
    return shape.num_layers * per_layer + final_norm
