"""`make container`: the packaged champion's Bento as a Docker image, run and checked (docs/serving.md#container).

1. A Docker engine and the local base image bentofile.yaml names (pipeline.docker_engine: started and built here when
   missing, as root).
2. `bentoml containerize` with the classic builder on the host network. This host's pip find-links wheels (our CPU
   torch build) are served on 127.0.0.1 during the build, through build arguments the base image declares.
3. `docker run --network host` on a free loopback port: GET /readyz, the demo pair scored as in-process (1e-4),
   GET /metrics; the container is always removed. The figures go to reports/container.json.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from pipeline.docker_engine import BASE_IMAGE, Engine, ensure_base_image, ensure_engine, image_size, stop_engine
from pipeline.errors import PipelineError, run_stage
from pipeline.paths import PACKAGE_REPORT, PAIR_FOLDER
from pipeline.stages.package import use_bentoml_home
from pipeline.tables import write_json
from serving.ports import free_local_port

DEMO_PAIR = ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다.")  # service.py EXAMPLE_PAIR, the Swagger example
TOLERANCE = 1e-4
REPORT = Path("reports/container.json")
WHEELS_PORT = 38741  # the local wheels' loopback port during a build


def host_package_sources() -> tuple[list[Path], str | None]:
    """This host's local wheel folders (PIP_FIND_LINKS, pip config find-links; none with KSTS_CONTAINER_LOCAL_WHEELS=0)
    and its package index when one is configured."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    links = " ".join([os.environ.get("PIP_FIND_LINKS", ""), *re.findall(r"find-links='([^']*)'", listed)]).split()
    folders = sorted({Path(link.removeprefix("file://")) for link in links if Path(link.removeprefix("file://")).is_dir()})
    if os.environ.get("KSTS_CONTAINER_LOCAL_WHEELS") == "0":  # e.g. a GPU image: torch from the index, not a CPU wheel
        folders = []
    configured = re.search(r"\.index-url='(https?://[^']+)'", listed)
    variables = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
    index = next((os.environ[name] for name in variables if os.environ.get(name)), configured and configured.group(1))
    return folders, index


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def wheel_server(folders: list[Path]) -> Iterator[str | None]:
    """The wheels in folders as a flat index on 127.0.0.1 (for uv's find-links) while the block runs; None if none."""
    wheels = {wheel.name: wheel for folder in folders for wheel in sorted(folder.glob("*.whl"))}
    if not wheels:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="korean-sts-wheels-") as listing:
        for name, wheel in wheels.items():
            (Path(listing) / name).symlink_to(wheel.resolve())
        handler = functools.partial(QuietHandler, directory=listing)
        try:  # one port, so the build argument and with it the build cache stay the same from build to build
            server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELS_PORT), handler)
        except OSError:  # taken: another port, and this build's Python layers are built again
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/"
        finally:
            server.shutdown()
            server.server_close()


def containerize(engine: Engine, bento: str, image: str, home: Path) -> float:
    """`bentoml containerize bento -t image` on the host network; seconds taken. The classic builder: Debian's
    docker.io has no buildx plugin, which BuildKit needs from a newer docker client."""
    folders, index = host_package_sources()
    with wheel_server(folders) as links:
        values = {"UV_FIND_LINKS": links, "UV_DEFAULT_INDEX": index, "PIP_INDEX_URL": index}
        options = ["network=host", *(f"build-arg={name}={value}" for name, value in values.items() if value)]
        path = f"{Path(engine.client).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "BENTOML_HOME": str(home), "DOCKER_BUILDKIT": "0", "PATH": path}
        with tempfile.TemporaryDirectory() as scratch:
            built = Path(scratch) / "image-id"  # written by docker only when the build succeeds (BentoML logs failures)
            options.append(f"iidfile={built}")
            opts = [f"--opt={item}" for item in options]
            command = [sys.executable, "-m", "bentoml", "containerize", bento, "-t", image, *opts]
            started = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
            seconds, image_id = time.monotonic() - started, built.read_text().strip() if built.is_file() else ""
    if done.returncode or not image_id:
        raise PipelineError(f"bentoml containerize {bento} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return seconds


def bento_model(home: Path, bento: str) -> tuple[Path, str, str | None]:
    """The pair-model folder of the Bento's model in the store at home, its serving runtime (label `runtime`), and the
    base image the Bento names (bentofile.yaml docker.base_image; None: BentoML's default)."""
    name, _, version = bento.partition(":")
    manifest = yaml.safe_load((home / "bentos" / name / version / "bento.yaml").read_text(encoding="utf-8"))
    models = manifest.get("models") or manifest["services"][0]["models"]  # a v1 Bento lists them at the top
    model_name, _, model_version = str(models[0]["tag"]).partition(":")
    folder = home / "models" / model_name / model_version
    labels = yaml.safe_load((folder / "model.yaml").read_text(encoding="utf-8")).get("labels") or {}
    base = (manifest.get("image") or manifest.get("docker") or {}).get("base_image")
    return folder / PAIR_FOLDER, labels.get("runtime", "torch"), base


def in_process_score(folder: Path, runtime: str) -> float:
    """The demo pair's score from the model folder on its runtime, in this process."""
    from serving.runtime import load_scorer

    return float(load_scorer(folder, runtime, threads=1).score([DEMO_PAIR])[0])


def wait_ready(engine: Engine, container: str, url: str, timeout: float = 300) -> float:
    """Seconds until GET url/readyz answers 200; a container that exits or stays unready fails with its log."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return time.monotonic() - started
        running = engine.run("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip()
        if running != "true" or time.monotonic() - started > timeout:
            logs = engine.run("logs", "--tail", "60", container, check=False)
            raise PipelineError(f"container {container[:12]} not ready (running: {running}):\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)


def check_container(engine: Engine, image: str, expected: float, env: dict[str, str] | None = None) -> dict:
    """Run image on a free loopback port, check /readyz, the demo pair against `expected`, /metrics; always removed."""
    port = free_local_port()
    variables = [item for name, value in (env or {}).items() for item in ("-e", f"{name}={value}")]
    run = ["run", "-d", "--network", "host", *variables, image, "--host", "127.0.0.1", "--port", str(port)]
    container = engine.run(*run).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        ready_seconds = wait_ready(engine, container, url)
        body = {"sentence1": DEMO_PAIR[0], "sentence2": DEMO_PAIR[1]}
        answer = httpx.post(f"{url}/similarity", json=body, timeout=60, trust_env=False)
        metrics = httpx.get(f"{url}/metrics", timeout=10, trust_env=False)
    finally:
        engine.run("rm", "--force", container, check=False)
    score = answer.json()["score"] if answer.status_code == 200 else None
    counted = metrics.status_code == 200 and "predicted_score_bucket" in metrics.text  # the service's own histogram
    result = {"start_to_ready_seconds": round(ready_seconds, 1), "similarity_status": answer.status_code, "score": score}
    result |= {"in_process_score": expected, "metrics_status": metrics.status_code, "metrics_count_scores": counted}
    result["container_removed"] = engine.run("inspect", container, check=False).returncode != 0
    if score is None or abs(score - expected) > TOLERANCE or not counted or not result["container_removed"]:
        raise PipelineError(f"the container answered wrong or stayed: {result} ({answer.text[:300]})")
    return result


def build_and_check(engine: Engine, bento: str, home: Path, image: str | None = None, env: dict[str, str] | None = None) -> dict:
    """Base image (once), `bentoml containerize`, then run and check the image; the figures as a dict."""
    image = image or bento
    folder, runtime, base = bento_model(home, bento)
    base_seconds = ensure_base_image(engine) if base == BASE_IMAGE else None  # else a registry image, pulled
    build_seconds = containerize(engine, bento, image, home)
    size = image_size(engine, image) or 0
    checked = check_container(engine, image, in_process_score(folder, runtime), env)
    server = engine.run("version", "--format", "{{.Server.Version}}").stdout.strip()
    return {
        "bento": bento,
        "image": image,
        "runtime": runtime,
        "image_size_bytes": size,
        "image_size_mb": round(size / 1e6),
        "containerize_seconds": round(build_seconds, 1),
        "base_image": base,
        "base_image_size_mb": round((image_size(engine, base or "python:3.11-slim") or 0) / 1e6),
        "base_image_build_seconds": None if base_seconds is None else round(base_seconds, 1),
        "docker_server": server,
        **checked,
    }


def main() -> None:
    try:
        bento = json.loads(PACKAGE_REPORT.read_text(encoding="utf-8"))["bento"]
    except FileNotFoundError as error:
        raise PipelineError(f"{PACKAGE_REPORT}: not found (run `make package` first)") from error
    home = use_bentoml_home(Path.cwd())
    engine = ensure_engine()
    try:
        report = build_and_check(engine, bento, home)
    finally:
        stop_engine(engine)
    write_json(REPORT, report)
    print(
        f"container: {report['image']} {report['image_size_mb']} MB, built in {report['containerize_seconds']} s, ready in "
        f"{report['start_to_ready_seconds']} s; demo pair {report['score']:.5f} (in-process {report['in_process_score']:.5f}), "
        f"/metrics {report['metrics_status']}; container removed ({REPORT})"
    )


if __name__ == "__main__":
    run_stage(main)
