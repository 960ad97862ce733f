"""The trainer's loss: only the completion positions go through the LM head (on one CPU
process), and validation loss is the mean over every completion token."""

from __future__ import annotations


def completion_loss_trainer_class():
    """SFTTrainer whose loss projects only the completion positions through the LM head.

    TRL's fused LM head scores only the positions with a label on Triton devices (CUDA, XPU);
    elsewhere it projects every position through the whole vocabulary, in Python-folded tiles,
    and also computes entropy and top-1 accuracy for its logs. For prompt/completion rows where
    the completion is a few tokens of ~75, that is most of a CPU step's time. In one process
    without Triton this computes the same loss from the completion positions only; otherwise
    (GPUs, several processes, models with scaled or soft-capped logits) TRL's own path runs.
    Validation takes the same path: it asks for outputs, but with prediction_loss_only only the
    loss is kept (one validation batch of 4 packed sequences: 2.6 s, against 9.4 s through TRL).
    """
    import torch
    from trl import SFTTrainer

    class CompletionLossTrainer(SFTTrainer):
        _val_sum = _val_count = 0.0

        def evaluation_loop(self, *args, **kwargs):
            self._val_sum = self._val_count = 0.0
            output = super().evaluation_loop(*args, **kwargs)
            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            totals = torch.tensor([self._val_sum, self._val_count], device=self.args.device)
            total, count = self.accelerator.reduce(totals, reduction="sum").tolist()
            if count > 0 and f"{prefix}_loss" in output.metrics:
                output.metrics[f"{prefix}_loss"] = total / count
            return output

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = self._loss(model, inputs, return_outputs, num_items_in_batch)
            if not model.training:
                # Trainer averages per-batch means, which weighs a token by how its batch was
                # laid out (a packed sequence, a padded batch); validation loss is the mean over
                # every completion token instead, so layouts and batch sizes compare.
                tokens = int((inputs["labels"][:, 1:] != -100).sum())
                value = loss[0] if isinstance(loss, tuple) else loss
                self._val_sum += float(value.detach().float()) * tokens
                self._val_count += tokens
            return loss

        def _loss(self, model, inputs, return_outputs, num_items_in_batch):
            base = plain_causal_lm(self.accelerator.unwrap_model(model))
            # Evaluation asks for outputs too, but with prediction_loss_only only the loss is used.
            loss_only = not return_outputs or (
                not model.training and self.args.prediction_loss_only
            )
            if (
                not loss_only
                or base is None
                or self.accelerator.num_processes != 1
                or inputs["input_ids"].device.type in ("cuda", "xpu")
            ):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = completion_positions_loss(base, inputs, num_items_in_batch)
            return (loss, {}) if return_outputs else loss

        def _load_best_model(self):
            # transformers copies the best checkpoint's full weights into the model, which a
            # model sharded as it loaded (FSDP) refuses (plain tensors into DTensors).
            from finetune.sharding import is_sharded, load_full_weights

            if hasattr(self.model, "peft_config") or not is_sharded(self.model):
                return super()._load_best_model()
            load_full_weights(self.model, self.state.best_model_checkpoint)

        def _save(self, output_dir=None, state_dict=None):
            # A LoRA checkpoint of a model sharded as it loaded (FSDP): the adapter's own
            # tensors, whole on every process. Given nothing, peft gathers the whole base model
            # onto every process to pick the adapter out of it.
            if state_dict is None and hasattr(self.model, "peft_config"):
                from finetune.sharding import is_sharded

                if is_sharded(self.model):
                    from finetune.saving import adapter_state

                    state_dict = adapter_state(self.model)
            return super()._save(output_dir, state_dict)

    return CompletionLossTrainer


def completion_positions_loss(base, inputs: dict, num_items_in_batch=None):
    """The causal-LM loss from the completion positions only: the decoder's hidden states at
    the positions with a label go through the LM head, the others never do."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    forward["use_cache"] = False
    hidden = base.base_model(**forward).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    logits = base.get_output_embeddings()(hidden[mask]).float()
    total = F.cross_entropy(logits, targets[mask], reduction="sum")
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def plain_causal_lm(model):
    """The causal LM under a PEFT wrapper, or None when its logits are scaled or soft-capped."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    config = model.config.get_text_config()
    scaled = any(
        getattr(config, name, None) is not None
        for name in (
            "final_logit_softcapping",
            "logit_scale",
            "output_multiplier",
            "lm_head_multiplier",
            "logits_scaling",
        )
    )
    if scaled or model.get_output_embeddings() is None or model.base_model is model:
        return None
    return model
