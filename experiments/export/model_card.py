"""MODEL_CARD.md of an export: the base model, the method and its settings, the data
fingerprints, the eval metrics with their confidence intervals and the measured cost (from the
report's own analysis of the run folder, experiments/report/analysis.py), and how to serve it."""

from __future__ import annotations

from experiments.report.formatting import (
    METRIC_TITLES,
    format_duration,
    interval_text,
    money_text,
    num_text,
)

ROLES = {
    "base_gguf": "the base model for llama.cpp (`-m`)",
    "adapter_gguf": "the LoRA adapter for llama.cpp (`--lora`)",
    "merged_gguf": "the adapted model for llama.cpp, adapter merged in",
    "modelfile": "Ollama's Modelfile",
    "adapter": "the PEFT adapter (transformers + peft, vLLM)",
    "merged": "the adapted model as safetensors (transformers, vLLM)",
    "base": "the base model as safetensors (converted from its GGUF), for vLLM",
    "vllm_command": "the `vllm serve` command line",
    "recipe": "the recipe: method, selector, k, seed, RAG settings, system text",
    "pool": "the example pool (the run's train rows)",
    "pool_vectors": "the pool's question embeddings, as the run computed them",
    "index": "the FAISS index and its chunks",
    "tokenizer": "the base model's tokenizer and chat template (renders the prompts)",
    "model": "the fully fine-tuned model the recipe's prompts go to",
    "chat_template": "the chat template (Jinja)",
    "model_card": "this card",
}


def method_figures(results: dict, records: list[dict], name: str) -> dict:
    """The method's metric intervals and costs, as the run's report computes them."""
    from experiments.report.analysis import analyse

    analysis = analyse(results, records)
    return {
        "metric": analysis["metric"],
        "intervals": analysis["intervals"].get(name) or {},
        "costs": analysis["costs"].get(name) or {},
        "currency": analysis["prices"].get("currency", "USD"),
        "resamples": analysis["resamples"],
        "seed": analysis["seed"],
        "best": analysis["best"],
        "tests": analysis["tests"].get(name) or {},
    }


def render(export: dict, figures: dict, settings: dict) -> str:
    """The model card: the model, the data, the eval metrics, the measured cost, the files, the
    prompt and how to serve it."""
    lines = _model_lines(export, settings)
    lines += _data_lines(export, figures)
    lines += _cost_lines(figures)
    lines += _files_and_prompt_lines(export)
    lines += _serving_lines(export)
    return "\n".join(lines).rstrip() + "\n"


def _model_lines(export: dict, settings: dict) -> list[str]:
    """The title and the model section."""
    run, method, base = export["run"], export["method"], export["base_model"]
    lines = [
        f"# {method['name']} for {run['task']}",
        "",
        f"Exported by {export['tool']} from the run folder `{run['path']}` as "
        f"`{export['format']}`" + (f" ({export['quant']})" if export.get("quant") else "") + ".",
        "",
        "## Model",
        "",
        f"- Base model: {base['name']} ({base['source']}: `{base['reference']}`)",
        f"- Method: `{method['name']}` ({method['family']}): {settings.get('description', '')}",
    ]
    for key, value in settings.items():
        if key == "description" or value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"- {key}: " + ", ".join(f"{k} `{v}`" for k, v in value.items()))
        else:
            lines.append(f"- {key}: {value}")
    return lines


def _data_lines(export: dict, figures: dict) -> list[str]:
    """The data and the eval metrics with their intervals."""
    run, method = export["run"], export["method"]
    lines: list[str] = []
    data = export["data"]
    lines += [
        "",
        "## Data",
        "",
        f"- Task: {run['task']} ({run['kind']}), metric {run['metric']}",
        f"- Train rows: {data['n_train']} (fingerprint `{data['train_fingerprint']}`)",
        f"- Eval rows scored: {data['n_eval']} (fingerprint `{data['eval_fingerprint']}`)",
        "",
        "## Eval metrics",
        "",
        f"95% confidence intervals: percentile bootstrap over eval rows, {figures['resamples']:,} "
        f"resamples, seed {figures['seed']} (the run's report).",
        "",
        "| metric | value [95% CI] |",
        "|---|---:|",
    ]
    for metric, interval in figures["intervals"].items():
        lines.append(f"| {METRIC_TITLES.get(metric, metric)} | {interval_text(interval)} |")
    best = figures.get("best")
    if best and best != method["name"]:
        lines += ["", f"The run's best method on {figures['metric']} was `{best}`."]
    return lines


def _cost_lines(figures: dict) -> list[str]:
    """What the method measured: time, latency, tokens, memory, money."""
    lines: list[str] = []
    cost = figures["costs"]
    currency = figures["currency"]
    lines += [
        "",
        "## Measured cost",
        "",
        f"- Hardware: {cost.get('hardware', 'n/a')}",
        f"- Preparation (training, indexing, embedding): {format_duration(cost.get('prepare_s'))}",
        f"- Latency per query: mean {num_text(cost.get('latency_mean_s'), '.3f')} s, p50 "
        f"{num_text(cost.get('latency_p50_s'), '.3f')} s, p95 "
        f"{num_text(cost.get('latency_p95_s'), '.3f')} s",
        f"- Tokens per query: {num_text(cost.get('prompt_tokens'), '.1f')} prompt, "
        f"{num_text(cost.get('generated_tokens'), '.1f')} generated",
        f"- Peak memory: {num_text(cost.get('peak_memory_mb'), ',.0f')} MB",
        f"- Cost per 1,000 queries: {currency} {money_text(cost.get('per_1k_queries'))}; per "
        f"preparation: {currency} {money_text(cost.get('per_preparation'))}",
        "",
        "## Files",
        "",
    ]
    return lines


def _files_and_prompt_lines(export: dict) -> list[str]:
    """The files and the prompt the export serves with."""
    lines: list[str] = []
    for role, path in export["files"].items():
        lines.append(f"- `{path}`: {ROLES.get(role, role)}")
    lines += ["", "## Prompt", ""]
    chat = export["chat"]
    lines.append(f"Prompts: {export['prompts_from']}.")
    lines.append(f"System text every prompt opens with: `{chat['system']}`")
    lines.append(f"Stop strings: {', '.join(f'`{s}`' for s in chat['stop']) or 'none'}")
    gen = export["generation"]
    if gen["kind"] == "classification":
        lines.append(
            f"Labels (the run ranks their log-likelihoods; a served model answers one of them): "
            f"{', '.join(gen['labels'])}"
        )
    else:
        lines.append(
            f"Greedy decoding, at most {gen['max_new_tokens']} new tokens"
            + (", stopping at the first newline" if gen["stop_at_newline"] else "")
        )
    return lines


def _serving_lines(export: dict) -> list[str]:
    """A command for each serving engine, or why there is none."""
    lines: list[str] = []
    lines += ["", "## Serving", "", "Run these in this folder.", ""]
    for name, title in (
        ("llama_server", "llama-server"),
        ("ollama", "Ollama"),
        ("vllm", "vLLM"),
        ("transformers", "transformers"),
    ):
        lines += [f"**{title}**", ""]
        command = export["serve"].get(name)
        if command:
            lang = "python" if name == "transformers" else "bash"
            lines += [f"```{lang}", command, "```", ""]
        else:
            lines += [export["serve_missing"].get(name, "not available for this export"), ""]
    return lines
