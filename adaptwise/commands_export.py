"""`adaptwise export`: ship one method of a run (a GGUF for llama.cpp and Ollama, the adapter
for vLLM, a merged model, or a prompt recipe).

Imports nothing heavy at module level: torch, transformers and gguf load inside the handler.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = "recipe, adapter, merged, gguf, ollama, vllm"
QUANTS = "f16, bf16, q8_0, q4_0"


def register(subparsers, add_run_options) -> None:
    export = subparsers.add_parser(
        "export",
        help="export one method of a run: GGUF, Ollama, vLLM, adapter, merged model or recipe",
        description="Write one method of a run folder as a folder that ships it, with "
        "export.json (what each file is, the chat template, stop strings, how to serve it) and "
        "MODEL_CARD.md (metrics with confidence intervals, cost, serving). Fine-tuned methods: "
        "adapter (PEFT), merged (safetensors), gguf (base, LoRA adapter and merged model for "
        "llama.cpp), ollama (the GGUF files and a Modelfile), vllm (the adapter and the `vllm "
        "serve` command). Prompting and RAG methods: recipe (prompt template, example pool or "
        "FAISS index, and the model reference), which adaptwise loads to rebuild the run's "
        "prompts.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run's output folder")
    export.add_argument("--method", required=True, help="the method to export (as in the run)")
    export.add_argument(
        "--format", required=True, dest="fmt", metavar="FORMAT", help=f"one of: {FORMATS}"
    )
    export.add_argument("--out", type=Path, required=True, help="the export folder to write")
    export.add_argument(
        "--quant",
        help=f"GGUF tensor type: {QUANTS} (gguf, ollama: default f16; recipe: also write the base "
        "model as a GGUF of this type, for `adaptwise serve`)",
    )
    export.add_argument(
        "--tokenizer-gguf",
        type=Path,
        help="a GGUF of the same base model to take llama.cpp's tokenizer from (needed when "
        "the base is a transformers folder with another tokenizer than SmolLM2's)",
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --out"
    )
    export.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    from rich.console import Console

    from experiments.export.bundle import export_method

    console = Console(stderr=True)
    record = export_method(
        args.run_dir,
        args.method,
        args.fmt,
        args.out,
        quant=args.quant,
        overwrite=args.overwrite,
        tokenizer_gguf=args.tokenizer_gguf,
        log=lambda message: console.print(f"[dim]{message}[/]"),
    )
    files = ", ".join(record["files"].values())
    took = record["export_s"]
    print(f"Exported {args.method} as {args.fmt} into {args.out} in {took:.1f} s: {files}")
    return 0
