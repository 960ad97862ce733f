"""Library messages a user cannot act on, silenced where they start."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    """Silence the library messages a user cannot act on, at their source."""
    import logging
    import os

    # No usage reports from huggingface_hub: adaptwise runs offline on the user's data.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    # Raised inside transformers when peft or TRL asks about checkpointing.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
    # bitsandbytes' CPU backend looks for an optional kernels package, then falls back.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
