"""Nothing reaches the network at run time: no hub lookups, no hub kernels (experiments/offline.py).

Every test already runs under the network guard (conftest.py, tests/netguard/). These tests run
the paths that used to reach out, with HF_HUB_OFFLINE unset as on a user's machine, and on a CPU
that bitsandbytes believes has AVX-512 BF16 (the case in which importing it asked the `kernels`
package for a hub kernel), so that they cover it on any CPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _user_environment(**extra) -> dict:
    """This process's environment less what adaptwise or the tests set for the hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ADAPTWISE_SET_"))}
    env.pop("USE_HUB_KERNELS", None)
    env.pop("DISABLE_KERNEL_MAPPING", None)
    return {**env, **extra}


def _guard_log(tmp_path) -> Path:
    log = tmp_path / "reached.log"
    log.write_text("", encoding="utf-8")
    return log


def _python_on_an_avx512_bf16_cpu(code: str, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_user_environment(ADAPTWISE_NETGUARD_LOG=str(log), ADAPTWISE_TEST_AVX512_BF16="1"),
        check=False,
        timeout=300,
    )


def test_importing_bitsandbytes_on_an_avx512_bf16_cpu_fetches_no_kernel(tmp_path):
    log = _guard_log(tmp_path)
    code = (
        "from experiments.startup import start_process\n"
        "start_process()  # as the CLI starts\n"
        "import bitsandbytes.functional as F\n"
        "import bitsandbytes.backends.cpu.ops as ops\n"
        "assert F.has_avx512bf16(), 'the fake AVX-512 BF16 CPU is not in place'\n"
        "import transformers, peft, trl\n"
        "print('imported')\n"
    )
    proc = _python_on_an_avx512_bf16_cpu(code, log)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported" in proc.stdout
    assert log.read_text() == "", log.read_text()[:3000]
    assert "kernels-community" not in proc.stderr + proc.stdout


def test_the_guard_sees_a_hub_kernel_lookup(tmp_path):
    """The check above can fail: without stay_offline, the same import reaches for the hub."""
    log = _guard_log(tmp_path)
    _python_on_an_avx512_bf16_cpu("import bitsandbytes\n", log)
    assert "huggingface.co" in log.read_text()


def test_the_hub_is_allowed_for_a_hub_model_the_user_names(monkeypatch):
    from huggingface_hub import constants

    from experiments.offline import OFFLINE_BY_ADAPTWISE, allow_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(OFFLINE_BY_ADAPTWISE, "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    allow_hub()
    assert constants.HF_HUB_OFFLINE is False and os.environ["HF_HUB_OFFLINE"] == "0"


def test_a_users_own_offline_setting_is_kept(monkeypatch):
    from huggingface_hub import constants

    from experiments.offline import OFFLINE_BY_ADAPTWISE, allow_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(OFFLINE_BY_ADAPTWISE, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    allow_hub()
    assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_hub_kernels_are_refused_even_with_the_hub_allowed():
    from kernels import get_kernel

    from experiments.offline import HubKernelsRefused

    with pytest.raises(HubKernelsRefused):
        get_kernel("kernels-community/quantization-bitsandbytes", version=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "methods", "cpu"),
    [
        # qlora takes peft's path and bitsandbytes' too (lora's is peft's alone, and runs
        # under the guard in every other fine-tuning test, with the hub switched off there).
        ("support-intents", "zero-shot,few-shot-embedding,qlora", {}),
        # bitsandbytes' 4-bit kernels for AVX-512 BF16 would not run on a CPU without it, so the
        # pretend one runs the methods that import bitsandbytes without training in 4 bits.
        ("helpdesk-qa", "zero-shot,rag", {"ADAPTWISE_TEST_AVX512_BF16": "1"}),
    ],
)
def test_a_demo_run_reaches_no_host(tmp_path, task, methods, cpu):
    """The demo's methods, with HF_HUB_OFFLINE unset, look up and connect to nothing outside
    127.0.0.1, on this CPU and on one that bitsandbytes believes has AVX-512 BF16."""
    log = _guard_log(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptwise",
            "run",
            str(ROOT / "demo" / task / "task.yaml"),
            "--methods",
            methods,
            "--limit",
            "2",
            "--finetune",
            "max_steps=2",
            "--finetune",  # the probe and validation reach nothing new: CI time (68 s -> 38 s)
            "forgetting_probe=false",
            "--finetune",
            "val_fraction=0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_user_environment(ADAPTWISE_NETGUARD_LOG=str(log), **cpu),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert log.read_text() == "", log.read_text()[:3000]
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["methods"]) == sorted(methods.split(","))
