"""The report's "LLM judge" section, in report.md and report.html: what the judge said of each
method, how many of its replies were unparseable (left out of its mean, intervals and paired
tests, and counted here), how often it agrees with exact match where exact match is decisive,
the RAG checks beside recall@k and MRR, and the judge's own tokens and cost, apart from the
methods' costs.

Agreement with exact match, on the rows where exact match is decisive:
- pointwise: the rows whose exact match is 1 (the answer is the reference, normalised); the
  judge agrees when it calls the answer correct (yes; a score of 4 or 5). Beside it, how many
  of the other rows it calls correct: not a disagreement (a right answer may be worded
  otherwise), but a judge that calls everything right shows there;
- pairwise: the rows where exactly one of the method and the baseline matches the reference
  exactly; the judge agrees when it prefers that one (a win or a loss, not a tie).
Rows whose verdict was unparseable are left out of both counts (and shown apart).

The judge's cost: its answers' tokens x the judge block's token prices (`judge: costs:`,
0 by default) for a served judge; its seconds x the hour price (the judge's `cpu_hour`, or
`gpu_hour` when the run measured GPU memory, else the defaults) for a local one. An answer
from the cache counts what it cost when it was asked, as a served method's does.
"""

from __future__ import annotations

from html import escape

from advisor.hosting_costs import DEFAULT_PRICES
from experiments import judge_records as records
from experiments.report.comparisons import by_method
from experiments.report.formatting import money_text, num_text

CHECK_TITLES = {"faithfulness": "faithfulness", "relevance": "answer relevance"}


def judge_analysis(results: dict, records_: list[dict], intervals: dict) -> dict | None:
    """The section's figures (None when the run has no judge)."""
    spec = results["task"].get("judge")
    if not isinstance(spec, dict):
        return None
    preds = by_method(records_)
    baseline = preds.get(spec.get("baseline") or "", {})
    rows = {}
    for name, entry in results["methods"].items():
        recs = list(preds.get(name, {}).values())
        figures = entry.get("judge") or {}
        checks = figures.get("checks") or {}
        usage = figures.get("usage") or {}
        rows[name] = {
            "checks": checks,
            "interval": (intervals.get(name) or {}).get("judge"),
            "agreement": _agreement(spec, recs, baseline, name),
            "usage": usage,
            "cost": _cost(spec, usage, entry),
            "retrieval": entry.get("retrieval") or {},
            "k": (entry.get("rag") or {}).get("k"),
        }
    total = {k: sum(int(r["usage"].get(k) or 0) for r in rows.values()) for k in records.USAGE_KEYS}
    costs = [r["cost"] for r in rows.values() if r["cost"] is not None]
    return {"spec": spec, "rows": rows, "total": total, "cost": sum(costs) if costs else None}


def _agreement(spec: dict, recs: list[dict], baseline: dict, name: str) -> dict | None:
    if not spec.get("metric") or (spec.get("mode") == "pairwise" and name == spec.get("baseline")):
        return None
    agree = decisive = unparsed = others = called = 0
    for rec in recs:
        mine = (rec.get("scores") or {}).get("exact_match")
        if spec.get("mode") == "pairwise":
            other = (baseline.get(str(rec["id"])) or {}).get("scores") or {}
            theirs = other.get("exact_match")
            if mine is None or theirs is None or mine == theirs:
                continue
            wanted = 1.0 if mine >= 1.0 else 0.0
            said = records.row_scores(spec, rec).get("judge")
            right = None if said is None else said == wanted
        else:
            right = records.judged_correct(spec, rec)
            if mine is None or mine < 1.0:  # not decisive: a right answer may be worded otherwise
                others += right is not None
                called += bool(right)
                continue
        if right is None:
            unparsed += 1
            continue
        decisive += 1
        agree += right
    out = {"agree": agree, "rows": decisive, "unparseable": unparsed}
    return out if spec.get("mode") == "pairwise" else {**out, "others": others, "called": called}


def _cost(spec: dict, usage: dict, entry: dict) -> float | None:
    if not usage:
        return None
    prices = {**DEFAULT_PRICES, "prompt_per_1k_tokens": 0.0, "generated_per_1k_tokens": 0.0}
    prices.update(spec.get("costs") or {})
    if str(spec.get("model", "")).startswith("openai:"):
        return (
            usage.get("prompt_tokens", 0) * prices["prompt_per_1k_tokens"]
            + usage.get("completion_tokens", 0) * prices["generated_per_1k_tokens"]
        ) / 1000
    hour = prices["gpu_hour" if entry.get("peak_memory_kind") == "GPU memory" else "cpu_hour"]
    return float(usage.get("seconds") or 0.0) / 3600 * hour


def _check_text(checks: dict, check: str) -> str:
    figures = checks.get(check)
    if not figures:
        return "-"
    mean = "n/a" if figures["mean"] is None else f"{figures['mean']:.3f}"
    shown = f"{mean} ({figures['judged']} judged"
    return shown + (f", {figures['unparseable']} unparseable)" if figures["unparseable"] else ")")


def _agree_text(agreement: dict | None, spec: dict) -> str:
    if agreement is None:
        return "-"
    where = (
        "rows where exactly one side matches exactly"
        if spec.get("mode") == "pairwise"
        else "rows where exact match is 1"
    )
    text = f"{agreement['agree']} of {agreement['rows']} {where}"
    if agreement["unparseable"]:
        text += f" ({agreement['unparseable']} unparseable)"
    if agreement.get("others"):  # a judge that calls everything right shows here
        text += f"; calls {agreement['called']} of {agreement['others']} others correct"
    return text


def _table(figures: dict, cur: str) -> tuple[list[str], list[list[str]]]:
    spec = figures["spec"]
    head = ["method"]
    if spec.get("metric"):
        head += ["judge [95% CI]", "judged", "unparseable (excluded)", "agrees with exact match"]
    head += ["judge requests (cached)", "judge prompt / gen tokens", f"judge {cur}"]
    rows = []
    for name, r in figures["rows"].items():
        if not r["usage"] and not r["checks"]:
            continue
        cells = [name]
        if spec.get("metric"):
            judged = r["checks"].get("judge") or {"judged": 0, "unparseable": 0, "mean": None}
            ci = r["interval"]
            mean = "n/a" if judged["mean"] is None else f"{judged['mean']:.3f}"
            cells += [mean + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")]
            cells += [str(judged["judged"]), str(judged["unparseable"])]
            cells += [_agree_text(r["agreement"], spec)]
        u = r["usage"]
        cells += [
            f"{u.get('requests', 0)} ({u.get('cached', 0)})",
            f"{u.get('prompt_tokens', 0):,} / {u.get('completion_tokens', 0):,}",
            money_text(r["cost"]),
        ]
        rows.append(cells)
    return head, rows


def _rag_table(figures: dict) -> tuple[list[str], list[list[str]]]:
    checks = [c for c in figures["spec"].get("rag") or [] if c in CHECK_TITLES]
    head = ["method", "recall@k", "MRR@10", *(f"{CHECK_TITLES[c]} (judge)" for c in checks)]
    rows = []
    for name, r in figures["rows"].items():
        if not any(c in r["checks"] for c in checks):
            continue
        k = r["k"]
        recall = r["retrieval"].get(f"recall@{k}")
        cells = [
            name,
            f"{num_text(recall, '.3f')} (k={k})",
            num_text(r["retrieval"].get("mrr@10"), ".3f"),
        ]
        rows.append(cells + [_check_text(r["checks"], c) for c in checks])
    return head, rows


def _lines(figures: dict, cur: str) -> dict:
    """The section's sentences, shared by report.md and report.html."""
    spec, total = figures["spec"], figures["total"]
    where = f" at {spec['base_url']}" if spec.get("base_url") else ""
    how = (
        f"{spec['mode']}, against {spec['baseline']}"
        if spec.get("mode") == "pairwise"
        else f"{spec['mode']}, scale {spec['scale']}"
    )
    intro = f"Judge: {spec['model']}{where} ({how if spec.get('metric') else 'RAG checks only'}). "
    intro += f"Rubric: {spec['rubric']}"
    cost = (
        f"The judge's own cost, apart from the methods' costs above: {money_text(figures['cost'])} "
        f"{cur} for {total['requests']:,} requests ({total['prompt_tokens']:,} prompt and "
        f"{total['completion_tokens']:,} generated tokens; {total['cached']:,} answered from the "
        "cache)."
    )
    rule = (
        "An unparseable verdict (no last line `VERDICT: ...` or `SCORE: n`) is never scored as 0: "
        "its row is left out of that method's judge mean and interval, and of the paired tests "
        "(both sides must have parsed), and counted here."
    )
    if spec.get("mode") == "pairwise" and spec.get("metric"):
        rule += (
            " Pairwise, each row is asked in both orders: win 1, tie 0.5, loss 0; when the "
            f"orders disagree it is a tie; {spec['baseline']} scores 0.5 against itself."
        )
    return {"intro": intro, "cost": cost, "rule": rule}


def _section(analysis: dict) -> tuple[dict, list] | None:
    """The section's sentences and its tables ((head, rows) each), or None: no judge."""
    figures = analysis.get("judge")
    if not figures:
        return None
    cur = analysis["prices"].get("currency", "USD")
    return _lines(figures, cur), [_table(figures, cur), _rag_table(figures)]


def judge_markdown(analysis: dict) -> list[str]:
    section = _section(analysis)
    if section is None:
        return []
    text, tables = section
    out = ["", "## LLM judge", "", text["intro"], ""]
    for head, rows in tables:
        if rows:
            out += [
                "| " + " | ".join(head) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
            ]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
            out.append("")
    return out + [text["cost"], "", text["rule"]]


def judge_html(analysis: dict) -> list[str]:
    section = _section(analysis)
    if section is None:
        return []
    text, tables = section
    out = ['<section id="judge"><h2>LLM judge</h2>', f"<p>{escape(text['intro'])}</p>"]
    for number, (head, rows) in enumerate(tables):
        if rows:
            th = "".join(f"<th>{escape(h)}</th>" for h in head)
            body = "".join(
                "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows
            )
            table_id = ("judge-table", "judge-rag-table")[number]
            out.append(
                f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'
            )
    out += [f"<p>{escape(text['cost'])}</p>", f'<p class="muted">{escape(text["rule"])}</p>']
    return out + ["</section>"]
