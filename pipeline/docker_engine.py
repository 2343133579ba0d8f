"""A Docker engine and the local base image for `make container` (pipeline.container; docs/serving.md#container).

The engine: the one that answers `docker info`, else (as root) dockerd from Debian's docker.io started here with no
bridge and no iptables rules, so builds and containers use the host network and services bind 127.0.0.1 only.
The base image (bentofile.yaml docker.base_image), made once when missing because no image registry may be reachable:
Debian bookworm by debootstrap with Python 3.11 and this host's CA bundle (pip and uv then pass a TLS-intercepting
proxy). It declares build arguments (ONBUILD ARG) for the package sources of a build, so none is baked into an image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

BASE_IMAGE = "korean-sts-base:bookworm"  # bentofile.yaml docker.base_image
SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILD_ARGS = ("UV_FIND_LINKS", "UV_DEFAULT_INDEX", "PIP_INDEX_URL")  # the base image's ONBUILD ARGs: build-time only
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",  # an imported image has none
    "SSL_CERT_FILE": CA_BUNDLE,  # uv reads it; Debian's pip uses this bundle already
    "UV_PYTHON_DOWNLOADS": "never",  # the image's own Python 3.11
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "BENTOML_DO_NOT_TRACK": "true",
}
APT_CLEAN = '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
SLIM_DOCS = ("doc", "man", "info", "locale")  # /usr/share folders dpkg leaves out (copyright notices stay)
SLIM_CONFIG = {  # as in debian:bookworm-slim, python:3.11-slim's base: apt keeps no .deb, lists compressed, no docs
    "etc/apt/apt.conf.d/docker-clean": f"DPkg::Post-Invoke {{ {APT_CLEAN} }};\nAPT::Update::Post-Invoke {{ {APT_CLEAN} }};\n",
    "etc/apt/apt.conf.d/docker-gzip-indexes": 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n',
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/dpkg/dpkg.cfg.d/docker-slim": "".join(f"path-exclude /usr/share/{name}/*\n" for name in SLIM_DOCS)
    + "path-include /usr/share/doc/*/copyright\n",
}


class EngineUnavailable(PipelineError):
    """No Docker engine answers and none can be started here; the message says why."""


@dataclass
class Engine:
    """The docker client to use, and the dockerd started here (None: it was running already)."""

    client: str
    daemon: subprocess.Popen | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
        done = subprocess.run([self.client, *args], capture_output=True, text=True, timeout=timeout, **popen)
        if check and done.returncode:
            raise PipelineError(f"docker {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done


def apt_install(*packages: str) -> None:
    """Debian packages by apt-get, as root; an index refresh only when the first try fails."""
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, capture_output=True).returncode:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode:
            raise EngineUnavailable(f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-800:]}")


def ensure_engine(timeout: float = 60) -> Engine:
    """A Docker engine that answers `docker info`: the running one, else dockerd started here (as root)."""
    client = shutil.which("docker")
    if client and subprocess.run([client, "info"], capture_output=True, timeout=30).returncode == 0:
        return Engine(client)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable("no Docker engine answers `docker info`, and starting one needs root and apt-get (docker.io)")
    if not shutil.which("dockerd") or not client:
        apt_install("docker.io")
    client = shutil.which("docker")
    log_path = Path(tempfile.gettempdir()) / "korean-sts-dockerd.log"
    command = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false"]
    if os.environ.get("KSTS_DOCKER_DATA_ROOT"):  # else dockerd's default data root, /var/lib/docker
        command += ["--data-root", os.environ["KSTS_DOCKER_DATA_ROOT"]]
    with log_path.open("w") as log:
        daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine, deadline = Engine(client, daemon), time.monotonic() + timeout
    while engine.run("info", check=False, timeout=30).returncode:
        if daemon.poll() is not None or time.monotonic() > deadline:
            stop_engine(engine)
            raise EngineUnavailable(f"dockerd did not start ({log_path}): {log_path.read_text()[-1500:]}")
        time.sleep(0.5)
    return engine


def stop_engine(engine: Engine) -> None:
    """Stop the dockerd started here, by its PID (images stay in its data root); a running one is left alone."""
    if engine.daemon is not None and engine.daemon.poll() is None:
        engine.daemon.terminate()
        try:
            engine.daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            engine.daemon.kill()
            engine.daemon.wait(timeout=10)


def debian_mirror(suite: str = SUITE, sources: list[Path] | None = None) -> str:
    """The Debian mirror apt uses for `suite` (sources: apt's one-line or deb822 lists, this host's by default), else
    deb.debian.org."""
    sources = sources or [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in (source for source in sources if source.is_file()):
        for block in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^(URIs|Suites):\s*(.+)$", block, re.M))
            entries = [(fields["URIs"], fields["Suites"])] if len(fields) == 2 else []
            entries += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", block, re.M)
            for uris, suites in entries:
                if suite in suites.split() and uris.split()[0].rstrip("/").endswith("/debian"):
                    return uris.split()[0]
    return "http://deb.debian.org/debian"


def image_size(engine: Engine, image: str) -> int | None:
    """The image's size in bytes, None when there is no such image."""
    done = engine.run("image", "inspect", "--format", "{{.Size}}", image, check=False)
    return int(done.stdout) if done.returncode == 0 else None


def slim_rootfs(root: Path) -> None:
    """Trim a debootstrapped tree as debian:bookworm-slim is trimmed, and let pip install into the system Python."""
    (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink()  # as in python:3.11-slim: BentoML pip-installs uv there
    for name, text in SLIM_CONFIG.items():
        (root / name).write_text(text, encoding="utf-8")
    leftovers = [*root.glob("var/cache/apt/archives/*.deb"), *root.glob("var/lib/apt/lists/*_*")]
    leftovers += [path for path in (root / "usr/share").glob("*/**/*") if path.is_file() and excluded(path.relative_to(root))]
    for path in leftovers:
        path.unlink()


def excluded(path: Path) -> bool:
    """Whether dpkg would now leave this /usr/share file out (documentation other than copyright notices, locales)."""
    return path.parts[2] in SLIM_DOCS and path.name != "copyright"


def ensure_base_image(engine: Engine, tag: str = BASE_IMAGE) -> float | None:
    """The local base image `tag`, built when missing (root: debootstrap + docker import); seconds taken, None if reused."""
    if image_size(engine, tag) is not None:
        return None
    if os.geteuid() != 0:
        raise EngineUnavailable(f"the base image {tag} is missing, and building it (debootstrap) needs root")
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="korean-sts-base-") as folder:
        root = Path(folder) / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(root), debian_mirror()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise PipelineError(f"debootstrap failed: {(done.stdout + done.stderr)[-2000:]}")
        shutil.copy(CA_BUNDLE, root / CA_BUNDLE.lstrip("/"))  # this host's bundle: its TLS proxy's CA too
        slim_rootfs(root)
        changes = [f"ENV {key}={value}" for key, value in BASE_ENV.items()] + [f"ONBUILD ARG {name}" for name in BUILD_ARGS]
        archive = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        options = [item for change in changes for item in ("--change", change)]
        engine.run("import", *options, "-", tag, stdin=archive.stdout, timeout=900)
        archive.wait()
    return time.monotonic() - started
