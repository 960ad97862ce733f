"""Resuming an interrupted training run: the fingerprint of what the checkpoints were trained
with, the checkpoint to resume from (or none, clearing another run's), and the one-line error
for a missing or corrupt checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from experiments.errors import TaskError
from finetune.config import FinetuneConfig

RUN_FILE = "run.json"  # in the checkpoints folder: what the checkpoints were trained with


def run_fingerprint(
    checkpoint: str, config: FinetuneConfig, train_rows, val_rows, raw_texts
) -> str:
    digest = hashlib.sha256()
    payload = {
        "base": str(checkpoint),
        "config": config.fingerprint_fields(),
        "train": [[r.id, list(r.messages), r.output] for r in train_rows],
        "val": [r.id for r in val_rows],
        "raw": hashlib.sha256("\x00".join(raw_texts).encode()).hexdigest(),
    }
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def resume_point(ckpt_dir: Path, fingerprint: str, config, log, get_last_checkpoint):
    """The last checkpoint of an interrupted run with the same settings and data, or None.

    Checkpoints of a different run are training scratch: they are removed before training.
    """
    if not ckpt_dir.is_dir():
        return None
    try:
        previous = json.loads((ckpt_dir / RUN_FILE).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    last = get_last_checkpoint(str(ckpt_dir)) if previous == fingerprint else None
    if config.resume and last:
        _check_checkpoint(Path(last))
        return last
    if any(ckpt_dir.iterdir()):
        log(f"{config.method}: starting afresh; removing checkpoints of an earlier run")
    shutil.rmtree(ckpt_dir)
    return None


def _check_checkpoint(path: Path) -> None:
    weights = [
        "adapter_model.safetensors",
        "model.safetensors",
        "pytorch_model.bin",
        "adapter_model.bin",
        "model.safetensors.index.json",
    ]
    if not (path / "trainer_state.json").is_file() or not any(
        (path / w).is_file() for w in weights
    ):
        raise corrupt_checkpoint(str(path), "trainer_state.json or the weights are missing")
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise corrupt_checkpoint(str(path), exc) from None


def corrupt_checkpoint(path: str, exc) -> TaskError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TaskError(
        f"checkpoint {path} is missing or corrupt ({detail[:160]}); delete that folder, or set "
        "finetune resume: false to train from the start"
    )


def checkpoint_step(path: str | None) -> int:
    if not path:
        return 0
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
