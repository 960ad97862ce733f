"""LoRA, QLoRA and full fine-tuning as methods the runner scores."""
