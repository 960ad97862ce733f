"""The result of `data check`: findings, per-split statistics, and their JSON and text forms."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERROR = "error"  # blocking: `data check` exits non-zero
WARNING = "warning"


@dataclass
class Finding:
    """One problem: which check found it, how bad, what to do, and the rows ("file:line")."""

    check: str
    severity: str
    message: str
    where: list[str] = field(default_factory=list)


@dataclass
class Report:
    task: str
    path: str
    kind: str
    splits: dict[str, dict] = field(default_factory=dict)  # rows, labels, tokens per split
    thresholds: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> dict:
        return {**asdict(self), "blocking": self.blocking}


def summary_lines(report: Report, examples: int = 5) -> list[tuple[str, str]]:
    """(style, text) lines for a terminal: statistics, then each finding with a few rows."""
    lines = [("bold", f"{report.task} ({report.kind}): {report.path}")]
    for split, stats in report.splits.items():
        tokens = stats.get("tokens") or {}
        text = f"  {split}: {stats['rows']} rows"
        if tokens:
            text += (
                f"; tokens min {tokens['min']} / median {tokens['median']} / p95 {tokens['p95']}"
                f" / max {tokens['max']}"
            )
        lines.append(("", text))
        if stats.get("labels"):
            rows = max(stats["rows"], 1)
            parts = [f"{k} {v} ({v / rows:.0%})" for k, v in stats["labels"].items()]
            lines.append(("dim", "    labels: " + ", ".join(parts)))
    if not report.findings:
        lines.append(("green", "No problems found."))
    for finding in report.findings:
        style = "red" if finding.severity == ERROR else "yellow"
        lines.append((style, f"{finding.severity} [{finding.check}] {finding.message}"))
        if len(finding.where) == 1 and finding.message.startswith(finding.where[0]):
            continue  # the message already starts with its location
        for where in finding.where[:examples]:
            lines.append(("dim", f"    {where}"))
        if len(finding.where) > examples:
            lines.append(("dim", f"    ... and {len(finding.where) - examples} more (JSON report)"))
    errors = sum(f.severity == ERROR for f in report.findings)
    warnings = len(report.findings) - errors
    verdict = "blocking problems found" if errors else "nothing blocking"
    lines.append(("bold", f"{errors} error(s), {warnings} warning(s): {verdict}"))
    return lines
