"""The memory a run may really use (advisor/memory_limits.py), and a run under a real `ulimit -v`:
the fit reads the limit, and a method that runs out of memory leaves the others their memory."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from advisor import memory_limits
from advisor.machine import Machine
from advisor.memory_limits import GB, VIRTUAL_PER_RESIDENT, ram_bounds, tightest_ram_bound

ROOT = Path(__file__).resolve().parent.parent


def fake_proc(tmp_path, available_kb=20_000_000, cgroup="0::/job\n", status=None) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 24000000 kB\nMemAvailable: {available_kb} kB\n")
    (proc / "self/cgroup").write_text(cgroup)
    lines = status or {"VmSize": 3_000_000, "VmData": 2_000_000, "RssAnon": 500_000}
    (proc / "self/status").write_text("".join(f"{k}:\t{v} kB\n" for k, v in lines.items()))
    return proc


def no_rlimits(monkeypatch, **limits):
    def getrlimit(which):
        for name, value in limits.items():
            if which == getattr(resource, name):
                return (value, resource.RLIM_INFINITY)
        return (resource.RLIM_INFINITY, resource.RLIM_INFINITY)

    monkeypatch.setattr(memory_limits.resource, "getrlimit", getrlimit)


def test_mem_available_alone(tmp_path, monkeypatch):
    no_rlimits(monkeypatch)
    proc = fake_proc(tmp_path)
    bound = tightest_ram_bound(1e9, proc=proc, cgroup_root=tmp_path / "none")
    assert bound.source == "MemAvailable"
    assert bound.gb == pytest.approx((20_000_000 * 1024 + 1e9) / GB)


def test_a_cgroup_v2_limit_binds_less_its_working_set(tmp_path, monkeypatch):
    no_rlimits(monkeypatch)
    proc = fake_proc(tmp_path)
    root = tmp_path / "cgroup"
    job = root / "job"
    job.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory\n")
    (job / "cgroup.controllers").write_text("memory\n")
    (job / "memory.max").write_text(f"{4 * 10**9}\n")
    (job / "memory.current").write_text(f"{3 * 10**9}\n")
    (job / "memory.stat").write_text(f"anon 1\ninactive_file {10**9}\n")
    bound = tightest_ram_bound(proc=proc, cgroup_root=root)
    assert bound.source == "cgroup v2 memory.max"
    assert bound.gb == pytest.approx(2.0)  # 4 GB less (3 GB used less 1 GB reclaimable cache)


def test_a_parent_cgroups_v2_limit_binds_its_children(tmp_path, monkeypatch):
    no_rlimits(monkeypatch)
    proc = fake_proc(tmp_path, cgroup="0::/slice/job\n")
    root = tmp_path / "cgroup"
    for folder, limit in ((root / "slice", str(10**9)), (root / "slice/job", "max")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cgroup.controllers").write_text("memory\n")
        (folder / "memory.max").write_text(limit + "\n")
        (folder / "memory.current").write_text("0\n")
    (root / "cgroup.controllers").write_text("memory\n")
    assert tightest_ram_bound(proc=proc, cgroup_root=root).gb == pytest.approx(1.0)


def test_a_cgroup_v1_limit(tmp_path, monkeypatch):
    no_rlimits(monkeypatch)
    proc = fake_proc(tmp_path, cgroup="4:memory:/process_api/x\n0::/\n")
    folder = tmp_path / "cgroup/memory/process_api/x"
    folder.mkdir(parents=True)
    (folder / "memory.usage_in_bytes").write_text(f"{2 * 10**9}\n")
    (folder / "memory.limit_in_bytes").write_text(f"{9 * 10**9}\n")
    (folder / "memory.stat").write_text(
        f"hierarchical_memory_limit {5 * 10**9}\ntotal_inactive_file {5 * 10**8}\n"
    )
    bound = tightest_ram_bound(proc=proc, cgroup_root=tmp_path / "cgroup")
    assert bound.source == "cgroup v1 memory limit"
    assert bound.gb == pytest.approx(3.5)


def test_an_unlimited_cgroup_v1_is_no_bound(tmp_path, monkeypatch):
    no_rlimits(monkeypatch)
    proc = fake_proc(tmp_path, cgroup="4:memory:/\n")
    folder = tmp_path / "cgroup/memory"
    folder.mkdir(parents=True)
    (folder / "memory.usage_in_bytes").write_text("100\n")
    (folder / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    sources = [b.source for b in ram_bounds(proc=proc, cgroup_root=tmp_path / "cgroup")]
    assert sources == ["MemAvailable"]


def test_ulimit_v_counts_address_space_not_resident_memory(tmp_path, monkeypatch):
    no_rlimits(monkeypatch, RLIMIT_AS=6 * 10**9)
    proc = fake_proc(tmp_path)
    bound = tightest_ram_bound(5e8, proc=proc, cgroup_root=tmp_path / "none")
    assert bound.source == "ulimit -v (RLIMIT_AS)"
    room = 6e9 - 3_000_000 * 1024
    assert bound.gb == pytest.approx((room / VIRTUAL_PER_RESIDENT + 5e8) / GB)


def test_ulimit_d_is_read_too(tmp_path, monkeypatch):
    no_rlimits(monkeypatch, RLIMIT_DATA=3 * 10**9)
    proc = fake_proc(tmp_path)
    assert tightest_ram_bound(proc=proc, cgroup_root=tmp_path / "none").source == (
        "ulimit -d (RLIMIT_DATA)"
    )


def test_the_machine_says_which_limit_bound_it():
    limited = Machine(2, 24.0, usable_gb=3.0, usable_source="ulimit -v (RLIMIT_AS)")
    assert limited.memory_gb == 3.0 and limited.memory_source == "ulimit -v (RLIMIT_AS)"
    assert Machine(2, 24.0).memory_gb == 24.0 and Machine(2, 24.0).memory_source == "RAM"
    gpu = Machine(2, 24.0, "H100", 80.0, gpu_free_gb=60.0)
    assert gpu.memory_gb == 60.0 and gpu.memory_source == "free GPU memory"


def test_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert memory_limits.visible_gpu_indices() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,3")
    assert memory_limits.visible_gpu_indices() == ["2"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert memory_limits.visible_gpu_indices() is None


def _run_under_ulimit_v(
    tmp_path, kib: int, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (kib * 1024, kib * 1024))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptwise",
            "run",
            str(ROOT / "demo/support-intents/task.yaml"),
            "--methods",
            "zero-shot,full-ft,few-shot-jaccard",
            "--limit",
            "10",
            "--finetune",
            "max_steps=2",
            "--finetune",  # what is tested is the training's memory: CI time
            "forgetting_probe=false",
            *extra,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        preexec_fn=limit,
        check=False,
    )
    results = json.loads((out / "results.json").read_text()) if out.is_dir() else {}
    return proc, results


@pytest.mark.slow
def test_under_ulimit_v_the_fit_reads_the_limit_and_the_other_methods_survive(tmp_path):
    """The issue's reproduction, under a real `ulimit -v` (3.6 GB of address space)."""
    proc, results = _run_under_ulimit_v(tmp_path, 3_600_000)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"zero-shot", "few-shot-jaccard"} <= set(results["methods"])
    assert "ulimit -v (RLIMIT_AS)" in proc.stdout + proc.stderr
    if "full-ft" in results["methods"]:  # it chose settings that fit, and they did
        assert results["methods"]["full-ft"]["memory"]["budget_source"] == "ulimit -v (RLIMIT_AS)"
    else:  # or it said so before loading a second copy of the model
        failed = results["failed"]["full-ft"]
        assert failed["status"] == "out of memory"
        assert "with the leanest settings" in failed["message"]
        assert failed["memory"]["budget_source"] == "ulimit -v (RLIMIT_AS)"
        assert failed["estimate_gb"] > failed["budget_gb"]


@pytest.mark.slow
def test_a_method_that_really_ran_out_of_memory_leaves_the_next_its_memory(tmp_path):
    """With the fit off, full-ft trains past the limit and fails for real; the model, optimizer
    and caches it held are released, so few-shot-jaccard still loads and runs."""
    proc, results = _run_under_ulimit_v(tmp_path, 3_600_000, "--finetune", "fit=off")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"zero-shot", "few-shot-jaccard"} <= set(results["methods"])
    assert results["failed"]["full-ft"]["status"] == "out of memory"
    assert "with the leanest settings" not in results["failed"]["full-ft"]["message"]
