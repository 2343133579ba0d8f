"""The install lock (requirements/lock.txt, written by `make lock`): it parses, pins every line with hashes, covers
pyproject.toml, leaves torch's CUDA build out, and agrees with the Bento's pins. Plain file checks, no network."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements/lock.txt"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries() -> list[list[str]]:
    """One [requirement, option, ...] list per logical line of the lock (backslash continuations joined)."""
    entries, current = [], []
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped.removesuffix("\\").split()
        if not stripped.endswith("\\"):
            entries.append(current)
            current = []
    assert not current, "the lock ends inside a continued line"
    return entries


def locked() -> dict[str, str]:
    """{normalized name: version} of the lock."""
    return {normalize(entry[0].split("==")[0]): entry[0].split("==")[1] for entry in lock_entries()}


def torch_spec_version() -> str:
    """The version of the Makefile's default TORCH_SPEC (what `make setup` installs before the lock)."""
    match = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (REPO / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "Makefile: TORCH_SPEC ?= torch==X"
    return match.group(1)


def bento_pins() -> dict[str, str]:
    """{normalized name: version} of bentofile.yaml's python.packages, every one pinned with ==."""
    packages = yaml.safe_load((REPO / "bentofile.yaml").read_text(encoding="utf-8"))["python"]["packages"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", package) for package in packages), packages
    return {normalize(package.split("==")[0]): package.split("==")[1] for package in packages}


def test_every_lock_line_is_pinned_with_hashes():
    entries = lock_entries()
    assert len(entries) > 100
    for requirement, *options in entries:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+", requirement), requirement
        assert options and all(HASH.fullmatch(option) for option in options), requirement
    names = [normalize(entry[0].split("==")[0]) for entry in entries]
    assert len(names) == len(set(names)), "a package pinned twice"


def test_the_lock_leaves_torch_and_its_cuda_build_out_but_keeps_torchs_own_dependencies():
    names = set(locked())
    cuda = {name for name in names if name in {"torch", "triton"} or name.startswith(("cuda-", "nvidia-"))}
    assert cuda <= {"nvidia-ml-py"}, cuda  # NVML bindings that bentoml imports: pure Python, no CUDA
    for requirement in map(Requirement, requires("torch") or []):
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            assert normalize(requirement.name) in names, requirement


def test_the_lock_covers_pyproject_and_its_extras():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *(dep for extra in project["optional-dependencies"].values() for dep in extra)]
    versions = locked()
    for spec in map(Requirement, wanted):
        if normalize(spec.name) != "torch":  # installed first from TORCH_SPEC, the CPU build
            assert normalize(spec.name) in versions, f"{spec.name}: not in the lock; run `make lock`"
            assert spec.specifier.contains(versions[normalize(spec.name)], prereleases=True), spec


def test_the_bento_pins_the_locked_versions():
    versions = {**locked(), "torch": torch_spec_version()}
    pins = bento_pins()
    assert {"torch", "transformers", "onnxruntime"} <= set(pins)
    wrong = {name: (pin, versions.get(name)) for name, pin in pins.items() if versions.get(name) != pin}
    assert not wrong, f"bentofile.yaml vs the lock (run `make lock`): {wrong}"


def test_make_setup_installs_from_the_lock():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^LOCK := requirements/lock\.txt$", makefile, re.MULTILINE)
    rule = re.search(r"^\$\(VENV\)/\.installed: (.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule and "$(LOCK)" in rule.group(1).split(), "the venv must be rebuilt when the lock changes"
    assert "--require-hashes --no-deps -r $(LOCK)" in rule.group(2)


@pytest.fixture(scope="module")
def lock_script():
    spec = importlib.util.spec_from_file_location("lock_script", REPO / "requirements/lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_lock_drops_only_what_torchs_cuda_build_alone_needs(lock_script):
    compiled = "\n".join(
        [
            "# header",
            "bentoml==1.4.40 \\\n    --hash=sha256:aa\n    # via korean-sts (pyproject.toml)",
            "cuda-toolkit==13.0.3.0 \\\n    --hash=sha256:bb\n    # via torch",
            "nvidia-cublas==13.1.1.3 \\\n    --hash=sha256:cc\n    # via\n    #   cuda-toolkit\n    #   nvidia-cusolver",
            "nvidia-cusolver==12.0.4.66 \\\n    --hash=sha256:dd\n    # via torch",
            "nvidia-ml-py==13.615.71 \\\n    --hash=sha256:ee\n    # via bentoml",
            "sympy==1.14.0 \\\n    --hash=sha256:ff\n    # via\n    #   onnxruntime\n    #   torch",
            "torch==2.13.0 \\\n    --hash=sha256:00\n    # via\n    #   -c /tmp/x/torch.txt\n    #   korean-sts (pyproject.toml)",
            "triton==3.7.1 \\\n    --hash=sha256:11\n    # via torch",
            "",
        ]
    )
    kept = lock_script.lock_versions(lock_script.omit_cuda(compiled))
    assert kept == {"bentoml": "1.4.40", "nvidia-ml-py": "13.615.71", "sympy": "1.14.0"}


def test_make_lock_repins_the_bentofile_and_refuses_unknown_packages(lock_script):
    bentofile = (
        "python:\n  packages:   # why\n    - torch==2.0.0\n    - Sentence_Transformers==1.0   # the bi head\n"
        "    - scipy\ndocker:\n  distro: debian\n"
    )
    versions = {"torch": "2.13.0", "sentence-transformers": "6.2.0", "scipy": "1.17.1", "debian": "9"}
    pinned = lock_script.pin_bento(bentofile, versions)
    assert pinned == bentofile.replace("2.0.0", "2.13.0").replace("==1.0", "==6.2.0").replace("scipy", "scipy==1.17.1")
    with pytest.raises(SystemExit, match="a name, or name==version"):
        lock_script.pin_bento(bentofile.replace("scipy", "scipy>=1"), versions)
    with pytest.raises(SystemExit, match="torch is not in"):
        lock_script.pin_bento(bentofile, {"sentence-transformers": "6.2.0"})
