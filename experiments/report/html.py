"""report.html: the comparison as one self-contained page.

No network: styles and the small disagreement filter are inline, plots are matplotlib SVGs and
loss-curve PNGs embedded as data: URIs (charts.py), and a Content-Security-Policy forbids any
fetch. The words and numbers it shares with report.md come from formatting.py.

One file over 400 lines on purpose: it is the page top to bottom, one function per section in
the order the page shows them, all built with the same `_table` helper.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from experiments.plain_text import plain
from experiments.report import formatting as fm
from experiments.report.charts import ci_plot, loss_image, pareto, setup_matplotlib
from experiments.report.formatting import (
    METRIC_TITLES,
    combined_text,
    format_duration,
    money_text,
    num_text,
    p_text,
    significance_sentence,
    verdict_sentences,
)
from experiments.report.judge_report import judge_html

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
MAX_CELL = 300  # characters of an output shown in the matrix; the full text is in its title

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e8f5e9}.bad{background:#ffebee}.best{font-weight:bold}
.muted{color:#666;font-size:.85rem}.figure img{max-width:100%;height:auto}
.front{color:#1b5e20;font-weight:bold}.ids{color:#555;font-size:.8rem}
#matrix-table td{max-width:320px;word-wrap:break-word}
"""

SCRIPT = """
(function(){
  var box=document.getElementById('disagree-only');
  var count=document.getElementById('matrix-count');
  function apply(){
    var rows=document.querySelectorAll('#matrix-table tbody tr');var shown=0;
    rows.forEach(function(r){
      var hide=box.checked&&r.dataset.disagree!=='1';
      r.hidden=hide;if(!hide){shown++;}
    });
    count.textContent=shown+' of '+rows.length+' rows shown';
  }
  box.addEventListener('change',apply);apply();
})();
"""


def render_html(results: dict, analysis: dict, out_dir: Path | None = None) -> str:
    task, methods = results["task"], results["methods"]
    opts = results.get("options") or {}
    title = f"{task['name']} ({task['kind']}): adaptwise comparison"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="muted">'
        + escape(
            f"Eval rows: {task['n_eval']} of {task.get('n_eval_total', task['n_eval'])} · "
            f"train rows: {task['n_train']} · model: {opts.get('model', '?')} · "
            f"seed: {opts.get('seed', '?')} · few-shot k: {opts.get('k', '?')} · primary metric: "
            f"{METRIC_TITLES.get(task['metric'], task['metric'])}"
        )
        + "</p>",
        f'<p class="muted">{escape(combined_text(results))}</p>' if combined_text(results) else "",
    ]
    if not methods:
        parts.append("<p>No method has finished yet.</p>")
        parts += _memory(results)
        parts += _climb_sections(results, out_dir)
        parts.append("</body></html>")
        return plain("\n".join(parts) + "\n")
    setup_matplotlib()
    parts += _verdict(analysis)
    parts += _summary(results, analysis)
    parts += ci_plot(analysis)
    parts += pareto(analysis)
    parts += _significance(analysis)
    parts += _retrieval(methods)
    parts += judge_html(analysis)
    parts += _training(methods, out_dir)
    parts += _memory(results)
    parts += _climb_sections(results, out_dir)
    parts += _verify(results)
    parts += _matrix(analysis)
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return plain("\n".join(parts) + "\n")  # no terminal escapes from names or answers


# --- sections ------------------------------------------------------------------------------------


def _verify(results: dict) -> list[str]:
    rows = fm.verify_rows(results)
    if not rows:
        return []
    head = "".join(f"<th>{escape(h)}</th>" for h in fm.VERIFY_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return [
        '<section id="verify"><h2>Served vs measured</h2>',
        "<p>Each method's eval rows sent to its served model with the run's exact prompts "
        "(adaptwise verify; the rows that differ are in verify.json).</p>",
        f"<table><tr>{head}</tr>{body}</table></section>",
    ]


def _verdict(analysis: dict) -> list[str]:
    items = "".join(f"<li>{escape(t)}</li>" for t in verdict_sentences(analysis))
    out = ['<section id="verdict"><h2>Verdict</h2>', f"<ul>{items}</ul>"]
    v = analysis.get("verdict")
    if v and v.get("warnings"):
        warn = "".join(f"<li>{escape(w)}</li>" for w in v["warnings"])
        out.append(f'<p class="muted">Advisor warnings:</p><ul class="muted">{warn}</ul>')
    out.append("</section>")
    return out


def _summary(results: dict, analysis: dict) -> list[str]:
    methods = results["methods"]
    names = analysis["metric_names"]
    cur = analysis["prices"].get("currency", "USD")
    head = ["method", *(f"{METRIC_TITLES.get(m, m)} [95% CI]" for m in names)]
    head += ["p vs zero-shot", "p vs best", "prep s", "s / example", "p50 s", "p95 s"]
    head += ["prompt tok", "gen tok", "peak MB", f"{cur} / 1k queries", f"{cur} / prep", "Pareto"]
    rows = []
    for name in analysis["methods"]:
        m, c = methods[name], analysis["costs"][name]
        best = " best" if name == analysis["best"] else ""
        cells = [f'<td class="name{best}">{escape(name)}</td>']
        for metric in names:
            ci = analysis["intervals"][name].get(metric)
            value = m.get("metrics", {}).get(metric)
            text = "n/a" if value is None else f"{value:.3f}"
            if ci:
                text += f' <span class="muted">[{ci["low"]:.3f}, {ci["high"]:.3f}]</span>'
            cells.append(f'<td class="num">{text}</td>')
        for label in ("zero-shot", "best"):
            test = analysis["tests"][name].get(label)
            if test:
                sig = "*" if test["significant"] else ""
                cells.append(
                    f'<td class="num" title="{escape(test["test"])}">{p_text(test["p"])}{sig}</td>'
                )
            else:
                cells.append('<td class="num">-</td>')
        for value in (
            num_text(c["prepare_s"], ".1f"),
            num_text(c["latency_mean_s"], ".3f"),
            num_text(c["latency_p50_s"], ".3f"),
            num_text(c["latency_p95_s"], ".3f"),
            num_text(c["prompt_tokens"], ".0f"),
            num_text(c["generated_tokens"], ".1f"),
            num_text(c["peak_memory_mb"], ".0f"),
            money_text(c["per_1k_queries"]),
            money_text(c["per_preparation"]),
        ):
            cells.append(f'<td class="num">{value}</td>')
        front = name in analysis["pareto"]
        cells.append(f'<td class="{"front" if front else ""}">{"yes" if front else ""}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    metric = analysis["metric"]
    test_name = (
        "McNemar's test (exact binomial below 25 discordant rows, else chi-squared with "
        "continuity correction)"
        if metric in ("accuracy", "exact_match")
        else "a paired bootstrap test"
    )
    kind = next(iter(methods.values())).get("peak_memory_kind", "n/a")
    return [
        '<section id="summary"><h2>Summary</h2>',
        _table(head, rows, "summary-table"),
        f'<p class="muted">95% CIs: percentile bootstrap over eval rows '
        f"({analysis['resamples']} resamples, seed {analysis['seed']}). p-values on "
        f"{escape(METRIC_TITLES.get(metric, metric))} by {test_name}, on the same rows; "
        "* marks p &lt; 0.05 (not corrected for multiple comparisons). Latency p50/p95: batch "
        f"time / batch size per row. Peak memory: {escape(kind)}.</p>",
        "</section>",
    ]


def _significance(analysis: dict) -> list[str]:
    metric = METRIC_TITLES.get(analysis["metric"], analysis["metric"])
    head = ["method", "against", "difference", "95% CI", "test", "p", "significant", "rows needed"]
    rows = []
    sentences = []
    done = set()
    for name in analysis["methods"]:
        for label in ("zero-shot", "best"):
            t = analysis["tests"][name].get(label)
            if not t or frozenset((name, t["against"])) in done:
                continue
            done.add(frozenset((name, t["against"])))
            needed = "-" if t["significant"] else num_text(t.get("rows_needed"), ",")
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{escape(str(x))}</td>"
                    for x in (
                        name,
                        t["against"],
                        f"{t['diff']:+.3f}",
                        f"{t['low']:+.3f} to {t['high']:+.3f}",
                        t["test"],
                        p_text(t["p"]),
                        "yes" if t["significant"] else "no",
                        needed,
                    )
                )
                + "</tr>"
            )
            sentences.append(significance_sentence(name, t, metric))
    out = ['<section id="significance"><h2>Significance</h2>']
    if not rows:
        out.append("<p>Nothing to compare yet.</p></section>")
        return out
    out.append(_table(head, rows, "significance-table"))
    out.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>")
    out.append(
        '<p class="muted">Rows needed: eval rows at which a difference of the observed size '
        "would be significant at alpha 0.05 with 80% power. McNemar: Connor (1987), from the "
        "discordant share and the difference; other metrics: normal approximation on the "
        "bootstrap standard error of the difference, which shrinks as 1/sqrt(rows).</p>"
    )
    out.append("</section>")
    return out


def _retrieval(methods: dict) -> list[str]:
    rows = {n: m for n, m in methods.items() if "retrieval" in m or "grounding" in m}
    if not rows:
        return []
    keys: list[str] = []
    for m in rows.values():
        for key in m.get("retrieval", {}):
            if key != "n_queries" and key not in keys:
                keys.append(key)
    head = ["method", *keys, "answer tokens in retrieved", "in gold passages"]
    body = []
    for name, m in rows.items():
        r, g = m.get("retrieval", {}), m.get("grounding", {})
        cells = [f"<td>{escape(name)}</td>"]
        cells += [f'<td class="num">{num_text(r.get(k), ".3f")}</td>' for k in keys]
        cells += [
            f'<td class="num">{num_text(g.get("answer_tokens_in_retrieved"), ".3f")}</td>',
            f'<td class="num">{num_text(g.get("answer_tokens_in_gold"), ".3f")}</td>',
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return [
        '<section id="retrieval"><h2>Retrieval</h2>',
        _table(head, body, "retrieval-table"),
        '<p class="muted">recall@k and MRR@10 over the documents of the retrieved chunks, '
        "against each eval row's context_ids (BEIR definitions); the last two columns are the "
        "share of answer tokens found in the retrieved passages and in the gold documents.</p>",
        "</section>",
    ]


def _training(methods: dict, out_dir: Path | None) -> list[str]:
    tuned = {n: m["training"] for n, m in methods.items() if isinstance(m.get("training"), dict)}
    if not tuned:
        return []
    head = ["method", "trainable / total params", "train tokens", "epochs", "steps", "train s"]
    head += ["tokens / s", "peak MB", "first / final train loss", "best val loss"]
    body = []
    for name, t in tuned.items():
        values = [
            name + (f" ({t['fallback']})" if t.get("fallback") else ""),
            f"{t.get('trainable_params', 0):,} / {t.get('total_params', 0):,}",
            f"{t.get('train_tokens', 0):,}",
            f"{t.get('epochs', 0):.2f}" + (" (stopped early)" if t.get("stopped_early") else ""),
            str(t.get("steps", "n/a")),
            num_text(t.get("train_wall_s"), ".1f"),
            num_text(t.get("tokens_per_s"), ".0f"),
            num_text(t.get("peak_memory_mb"), ".0f"),
            f"{num_text(t.get('first_train_loss'), '.3f')} / "
            f"{num_text(t.get('final_train_loss'), '.3f')}",
            num_text(t.get("best_val_loss"), ".3f"),
        ]
        body.append("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in values) + "</tr>")
    out = ['<section id="training"><h2>Fine-tuning</h2>', _table(head, body, "training-table")]
    for name, t in tuned.items():
        image = loss_image(name, t, out_dir)
        if image:
            out.append(
                f'<div class="figure loss-curve"><h3>{escape(name)} loss</h3>'
                f'<img alt="{escape(name)} loss curve" src="{image}"></div>'
            )
        else:
            out.append(f"<p>{escape(name)}: no loss curve recorded (n/a).</p>")
    probes = {
        n: m["forgetting"] for n, m in methods.items() if isinstance(m.get("forgetting"), dict)
    }
    out.append('<h3 id="forgetting">Forgetting check</h3>')
    if probes:
        fb = []
        for name, f in probes.items():
            change = f.get("change")
            warn = change is not None and change <= -0.1
            values = [
                name,
                str(f.get("n_questions", "n/a")),
                num_text(f.get("accuracy_before"), ".3f"),
                num_text(f.get("accuracy_after"), ".3f"),
                num_text(change, "+.3f") + (" (forgot)" if warn else ""),
                str(f.get("answers_changed", "n/a")),
            ]
            fb.append("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in values) + "</tr>")
        out.append(
            _table(
                ["method", "questions", "before", "after", "change", "answers changed"],
                fb,
                "forgetting-table",
            )
        )
        out.append(
            '<p class="muted">General-knowledge multiple-choice probe scored by log-likelihood '
            "before and after training; a drop of 0.1 or more is a warning.</p>"
        )
    else:
        out.append("<p>n/a: no forgetting probe was recorded.</p>")
    out.append("</section>")
    return out


def _memory(results: dict) -> list[str]:
    from experiments.report.memory_table import HEAD, memory_rows

    rows = memory_rows(results)
    if not rows:
        return []
    body = ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return [
        '<section id="memory"><h2>Memory</h2>',
        _table(HEAD, body, "memory-table"),
        '<p class="muted">Estimates from the memory estimator for the settings each method ran '
        "with; a method that ran out of memory is kept here with the first change that would "
        "make it fit.</p></section>",
    ]


def _matrix(analysis: dict) -> list[str]:
    names = analysis["methods"]
    rows = analysis["matrix"]
    out = ['<section id="matrix"><h2>Per-example results</h2>']
    if not rows:
        out.append("<p>n/a: no prediction records (predictions.jsonl) for this run.</p>")
        return out + ["</section>"]
    n_dis = sum(r["disagree"] for r in rows)
    out.append(
        '<p><label><input type="checkbox" id="disagree-only"> only rows where methods disagree '
        f"(one right, another wrong): {n_dis} of {len(rows)}</label> · "
        '<span id="matrix-count"></span></p>'
    )
    head = ["id", "gold", *names]
    body = []
    for r in rows:
        cells = [f"<td>{escape(r['id'])}</td>", f"<td>{_short(r['gold'])}</td>"]
        for name in names:
            c = r["cells"].get(name)
            if c is None:
                cells.append("<td>n/a</td>")
                continue
            mark = "&#10003;" if c["correct"] else "&#10007;"
            text = f"{mark} {_short(c['output'])}"
            if c.get("retrieved"):
                text += f'<div class="ids">passages: {escape(", ".join(c["retrieved"]))}</div>'
            cls = "ok" if c["correct"] else "bad"
            cells.append(f'<td class="{cls}" data-method="{escape(name)}">{text}</td>')
        flag = "1" if r["disagree"] else "0"
        body.append(f'<tr data-disagree="{flag}">' + "".join(cells) + "</tr>")
    out.append(_table(head, body, "matrix-table"))
    out.append("</section>")
    return out


def _climb_sections(results: dict, out_dir: Path | None) -> list[str]:
    """The ladder, the sweep and the learning curve, where the run has them."""
    out: list[str] = []
    ladder = results.get("ladder")
    if isinstance(ladder, dict) and ladder.get("rungs"):
        metric = METRIC_TITLES.get(ladder["metric"], ladder["metric"])
        goal = f"{metric} >= {ladder['target']:g}" if ladder.get("target") is not None else "none"
        head = ["rung", "status", f"{metric} [95% CI]", "CI lower bound meets target"]
        head += ["estimated / measured"]
        body = []
        for row, rung in zip(fm.ladder_rows(ladder), ladder["rungs"], strict=True):
            cls = {"run": "", "kept": "", "skipped": "bad", "not run": "muted"}.get(
                rung["status"], ""
            )
            cls = "ok" if rung.get("meets_target") else cls
            cells = "".join(f"<td>{escape(v)}</td>" for v in row)
            body.append(f'<tr class="{cls}">{cells}</tr>')
        error = fm.estimate_error(ladder)
        out += [
            '<section id="ladder"><h2>Ladder</h2>',
            f"<p>Target: {escape(goal)} (met when the 95% interval's lower bound reaches it)"
            + (
                f" · budget: {escape(_duration(ladder['budget_s']))}"
                if ladder.get("budget_s")
                else ""
            )
            + "</p>",
            _table(head, body, "ladder-table"),
            f"<p><strong>{escape(ladder.get('message') or 'The climb is under way.')}</strong></p>",
            '<p class="muted">Estimated times are the plan\'s (adaptwise plan: preparation + '
            "scoring); measured is preparation + scoring in this run (prepare_s + inference_s)."
            + (f" {escape(error)}" if error else "")
            + "</p></section>",
        ]
    sweep = results.get("sweep")
    if isinstance(sweep, dict) and sweep.get("trials"):
        body = [
            "<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
            for row in fm.sweep_rows(sweep)
        ]
        out += [
            f'<section id="sweep"><h2>Sweep ({escape(sweep["method"])})</h2>',
            "<p>Trials are ranked on the validation split (best validation loss); the eval set "
            "is never used to choose. Only the winner is scored on eval.</p>",
            _table(fm.SWEEP_HEADER, body, "sweep-table"),
            f"<p><strong>{escape(sweep.get('message') or '')}</strong></p></section>",
        ]
    curve = results.get("learning_curve")
    if isinstance(curve, dict) and curve.get("points"):
        body = [
            "<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
            for row in fm.curve_rows(curve)
        ]
        verdicts = "".join(
            f"<li><strong>{escape(m)}</strong>: {escape(v.get('message', 'n/a'))}</li>"
            for m, v in (curve.get("verdicts") or {}).items()
        )
        out += [
            '<section id="learning-curve"><h2>Learning curve</h2>',
            _table(fm.CURVE_HEADER, body, "curve-table"),
            f"<ul>{verdicts}</ul>",
        ]
        png = Path(out_dir) / curve["png"] if out_dir is not None and curve.get("png") else None
        if png is not None and png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            out.append(
                '<div class="figure"><img alt="learning curve" '
                f'src="data:image/png;base64,{data}"></div>'
            )
        out.append(
            '<p class="muted">Rule: the paired 95% bootstrap interval of the last step\'s gain '
            "(the two largest subsets, same eval rows): above 0 rising (collect more data), "
            "below 0 falling, containing 0 flat (change the method or the model).</p></section>"
        )
    return out


def _duration(seconds) -> str:
    return format_duration(seconds)


# --- helpers -------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[str], table_id: str) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _short(text) -> str:
    text = "" if text is None else str(text)
    if len(text) <= MAX_CELL:
        return escape(text)
    return f'<span title="{escape(text)}">{escape(text[:MAX_CELL])}…</span>'
