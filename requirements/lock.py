"""`make lock`: requirements/lock.txt (hash-pinned) from pyproject.toml, then the Bento's pins from it.

1. `uv pip compile` of pyproject.toml's dependencies plus the dev and postgres extras, for CPython 3.11 on
   Linux x86_64, with hashes. Versions already in the lock are kept (uv prefers them); `--upgrade` lifts them.
2. torch and what only torch's CUDA build pulls (nvidia-*, cuda-*, triton) are left out: `make setup` installs
   TORCH_SPEC (the CPU build) first, and PyPI's Linux torch is the multi-GB CUDA one. torch's own
   dependencies (filelock, sympy, networkx, jinja2, fsspec, ...) stay in the lock.
3. The pins of bentofile.yaml's `python.packages` are rewritten at the lock's versions (torch at TORCH_SPEC's).

Usage: python requirements/lock.py [--torch SPEC] [--upgrade]; tests/test_lock.py checks that the files agree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path("requirements/lock.txt")
BENTOFILE = Path("bentofile.yaml")
EXTRAS = ("dev", "postgres")
TARGET = ("--python-version", "3.11", "--python-platform", "x86_64-unknown-linux-gnu")
CUDA = re.compile(r"triton|nvidia-.+|cuda-.+")
NOTE = "# torch and its CUDA-only dependencies (nvidia-*, cuda-*, triton) are left out: `make setup` installs TORCH_SPEC first.\n"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
BENTO_PIN = re.compile(r"^(\s+-\s+)([A-Za-z0-9][A-Za-z0-9._-]*)(==[^\s#]+)?(?=\s|$)")  # name, or name==version


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The header lines and one (name, lines) block per requirement of a uv-compiled file."""
    header: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        match = PIN.match(line)
        if match:
            blocks.append((normalize(match.group(1)), [line]))
        elif blocks and line[:1].isspace():
            blocks[-1][1].append(line)
        elif not blocks:
            header.append(line)
        else:
            raise SystemExit(f"lock: unexpected line {line!r}")
    return header, blocks


def parents(lines: list[str]) -> set[str]:
    """The names a block's `# via` annotation lists (`# via x`, or `# via` and then one `#   x` a line)."""
    names = set()
    for line in lines:
        words = line.strip().removeprefix("#").split() if line.lstrip().startswith("#") else []
        words = words[1:] if words[:1] == ["via"] else words
        names |= {normalize(words[0])} if words else set()
    return names


def omit_cuda(text: str) -> str:
    """text without torch and the CUDA packages that only torch needs (nvidia-ml-py, which bentoml needs, stays)."""
    header, blocks = split_blocks(text)
    needed_by = {name: parents(lines) for name, lines in blocks}
    dropped = {"torch"}
    while more := {n for n, via in needed_by.items() if n not in dropped and CUDA.fullmatch(n) and via and via <= dropped}:
        dropped |= more
    return "".join([*header, NOTE, *(line for name, lines in blocks if name not in dropped for line in lines)])


def compile_lock(torch_spec: str, upgrade: bool) -> str:
    """uv's output for the project, seeded with the current lock so that its versions are kept."""
    env = {**os.environ, "UV_SYSTEM_CERTS": "1"}  # the machine's CA store, as pip uses it (a TLS proxy's CA)
    with tempfile.TemporaryDirectory(prefix="lock-") as work:
        output, constraint = Path(work, "lock.txt"), Path(work, "torch.txt")
        if (ROOT / LOCK).exists():
            shutil.copy(ROOT / LOCK, output)
        constraint.write_text(torch_spec + "\n", encoding="utf-8")  # torch's deps resolved for the torch setup installs
        command = [sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", *TARGET, "--generate-hashes"]
        command += [*(f"--extra={extra}" for extra in EXTRAS), "-c", str(constraint), "-o", str(output)]
        command += ["--custom-compile-command", "make lock", "--quiet", *(["--upgrade"] if upgrade else [])]
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        return output.read_text(encoding="utf-8")


def lock_versions(text: str) -> dict[str, str]:
    """{normalized name: version} of every pinned requirement in a lock."""
    return {name: PIN.match(lines[0]).group(2) for name, lines in split_blocks(text)[1]}


def pin_bento(bentofile: str, versions: dict[str, str]) -> str:
    """bentofile.yaml's text with each `python.packages` entry pinned at versions[name]."""
    lines, inside = bentofile.splitlines(keepends=True), False
    for index, line in enumerate(lines):
        if re.match(r"^\s+packages:", line):
            inside = True
        elif inside and line.lstrip().startswith("-"):
            match = BENTO_PIN.match(line)
            if not match:
                raise SystemExit(f"{BENTOFILE}: a name, or name==version, please: {line.strip()}")
            name = normalize(match.group(2))
            if name not in versions:
                raise SystemExit(f"{BENTOFILE}: {match.group(2)} is not in {LOCK}")
            lines[index] = f"{match.group(1)}{match.group(2)}=={versions[name]}{line[match.end() :]}"
        else:
            inside = False
    return "".join(lines)


def torch_version(spec: str) -> str:
    """The version TORCH_SPEC pins (torch==X), else the installed torch's, without a local label (+cpu)."""
    if "==" in spec:
        return spec.split("==", 1)[1].strip()
    from importlib.metadata import version

    return version("torch").split("+")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", default="torch", help="TORCH_SPEC: the torch that `make setup` installs first")
    parser.add_argument("--upgrade", action="store_true", help="move every package to its newest allowed release")
    args = parser.parse_args()
    lock = omit_cuda(compile_lock(args.torch, args.upgrade))
    (ROOT / LOCK).write_text(lock, encoding="utf-8")
    versions = {**lock_versions(lock), "torch": torch_version(args.torch)}
    bentofile = (ROOT / BENTOFILE).read_text(encoding="utf-8")
    (ROOT / BENTOFILE).write_text(pin_bento(bentofile, versions), encoding="utf-8")
    print(f"lock: {LOCK} pins {len(versions) - 1} packages; {BENTOFILE} pinned from it")


if __name__ == "__main__":
    main()
