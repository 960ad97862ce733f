"""`adaptwise export RUN_DIR --method NAME --format FORMAT --out DIR`: ship one method of a run.

Formats, by the method's family:

    family                     formats
    prompting, rag             recipe
    lora, qlora                adapter, merged, gguf, ollama, vllm
    full-ft                    merged, gguf, ollama, vllm
    hybrid (rag+lora, raft)    recipe (with the adapter or model inside), and the model formats

The export folder (the contract `serve`, `verify` and `predict` read)
---------------------------------------------------------------------
Every export folder holds `export.json`, `MODEL_CARD.md`, `chat_template.jinja` (when the model
has a chat template) and adaptwise's manifest `.adaptwise-output.json`, plus by format:

    adapter   adapter/                     the PEFT folder as the run saved it
    merged    merged/                      safetensors (full-ft: its model/ folder)
    gguf      base-<q>.gguf                the base model (LoRA and QLoRA only)
              adapter-<aq>.gguf            llama.cpp LoRA (`--lora`); aq = q, but q8_0 for q4_0
              merged-<q>.gguf              base + adapter, or full-ft's weights
    ollama    the gguf files, Modelfile    FROM base, ADAPTER adapter, TEMPLATE, SYSTEM, stops
    vllm      adapter/ (+ base/ when the base was a GGUF; vLLM needs transformers weights),
              or merged/ (full-ft); vllm-serve.sh with the exact command line
    recipe    recipe.json, pool.jsonl, tokenizer/, pool-vectors.npy (embedding/MMR selectors,
              RAG), index/ (RAG), adapter/ or model/ (hybrids): see experiments/export/recipe.py

`export.json` (format_version 1); paths are relative to the export folder, folders end in "/":

    format_version   1
    tool             "adaptwise 0.1.0"
    run              {path (absolute), results_sha256, task, kind, metric}
    method           {name, family: prompting|rag|lora|qlora|full-ft|hybrid,
                      trained: lora|qlora|full-ft|null, description}
    format           recipe|adapter|merged|gguf|ollama|vllm
    quant            f16|bf16|q8_0|q4_0 for gguf and ollama, else null
    base_model       {name, source: embedded-gguf|gguf-file|local-folder|hub|served, reference}
    files            {role: path}; roles: base_gguf, adapter_gguf, merged_gguf, modelfile,
                     adapter, merged, base, vllm_command, recipe, pool, pool_vectors, index,
                     tokenizer, model, chat_template, model_card
    chat             {template (Jinja text or null), family (chatml|llama3|mistral|phi3, ollama
                      only, else null), system (the system text every prompt of the method
                      opens with), stop (strings that end an answer), bos_token, eos_token}
    generation       {kind, labels, greedy: true, max_new_tokens, stop_at_newline (qa),
                      calibrate}: how the run scored the method
    data             {n_train, train_fingerprint, n_eval, eval_fingerprint}
    metrics          {metric: {estimate, low, high}}: the run report's 95% bootstrap intervals
    cost             the report's measured cost of the method (prepare_s, latency, tokens,
                     peak memory, per_1k_queries, ...)
    gguf             gguf/ollama: {tokenizer_from, bytes: {file: size}, fallbacks: {file:
                      {tensor: why}}, adapter_quant, lora: {rank, alpha, peft_alpha}}
    vllm             vllm: {command, lora_rank}
    recipe           recipe: {verified_rows}: eval rows whose prompt the recipe rebuilt exactly
    serve            {llama_server, ollama, vllm, transformers}: commands (run in the folder)
    serve_missing    {server: what to export instead}, for the servers this format cannot feed
    prompts_from     where the prompts to send come from: "chat: ..." (the system text, then
                     the row as the user's turn), "recipe: ..." or, for a hybrid's model
                     formats, its RAG recipe
    export_s         seconds the export took
"""
