"""`bentoml containerize` for real: a tiny ONNX champion's Bento, built as the package stage builds it (bentofile.yaml),
becomes an image on a real Docker engine, runs on the host network on a loopback port and answers /readyz, the demo
pair as scored in-process (1e-4) and /metrics; then the container is gone.

As root the test starts dockerd itself (Debian's docker.io, installed when missing) and builds the local base image
once (debootstrap, a few minutes; reused after). It skips only where no engine can start: not root and no engine
answering. The image keeps one fixed tag, so the next run reuses its layers (the Python packages).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.docker_engine import BASE_IMAGE, EngineUnavailable, debian_mirror, ensure_engine, stop_engine
from tests.conftest import REPO
from tests.support.toy_models import bi_pair_model
from tests.test_service import run_python

IMAGE = "korean_sts:container-test"
LEAN_BENTO_CEILING_MB = 1500  # docs/serving.md#container: the ONNX champion's image


@pytest.fixture(scope="module")
def engine():
    try:
        engine = ensure_engine()
    except EngineUnavailable as error:
        pytest.skip(f"no Docker engine can start here: {error}")
    yield engine
    stop_engine(engine)  # only a dockerd this test started; its images stay for the next run


@pytest.fixture()
def onnx_bento(tiny_bert, tmp_path) -> tuple[Path, str]:
    """A BENTOML_HOME holding a tiny bi-encoder on the onnx runtime and its Bento; (home, bento tag)."""
    folder = bi_pair_model(tiny_bert, tmp_path / "bi", runtime="onnx")
    home = tmp_path / "home"
    labels = {"registry_version": "1", "runtime": "onnx"}
    code = (  # as the package stage builds an onnx champion's Bento: lean (torch_free)
        "from pipeline.runtimes import RUNTIMES\n"
        "from pipeline.stages.package import build_bento, import_pair_model\n"
        f"model = import_pair_model({str(folder)!r}, 'korean-sts-similarity', {labels!r})\n"
        f"labels = {{'model': model, **{labels!r}}}\n"
        "print(build_bento('bentofile.yaml', '.', model, labels, torch_free=RUNTIMES['onnx'].torch_free))\n"
    )
    return home, run_python(code, home).split()[-1]


def test_the_bento_runs_in_a_container_as_it_scores_in_process(engine, onnx_bento):
    from pipeline.container import DEMO_PAIR, build_and_check

    home, bento = onnx_bento
    previous = engine.run("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    started = time.monotonic()
    try:
        report = build_and_check(engine, bento, home, image=IMAGE, env={"KSTS_SERVE_WORKERS": "1"})
    except EngineUnavailable as error:  # not root: the base image cannot be made here
        pytest.skip(str(error))
    print(f"\ncontainer test: {time.monotonic() - started:.0f} s, {report}")
    current = engine.run("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if previous and previous != current:
        engine.run("image", "rm", previous, check=False)  # the last run's image, now untagged (its shared layers stay)

    assert report["similarity_status"] == 200 and report["metrics_status"] == 200 and report["metrics_count_scores"]
    assert report["score"] == pytest.approx(report["in_process_score"], abs=1e-4)
    assert report["runtime"] == "onnx" and report["base_image"] == BASE_IMAGE
    assert report["image_size_bytes"] > 0 and report["containerize_seconds"] > 0
    leftovers = engine.run("ps", "--all", "--quiet", "--filter", f"ancestor={IMAGE}").stdout.split()
    assert not leftovers, f"containers left behind: {leftovers}"
    requirements = (home / "bentos" / bento.replace(":", "/") / "env/python/requirements.txt").read_text(encoding="utf-8")
    assert "torch" not in requirements and report["image_size_mb"] <= LEAN_BENTO_CEILING_MB, (requirements, report)
    # the pair the container scored is the service's own example (its Swagger UI sample)
    assert all(sentence in (REPO / "service.py").read_text(encoding="utf-8") for sentence in DEMO_PAIR)


def test_the_base_image_comes_from_the_debian_mirror_apt_uses(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
        encoding="utf-8",
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "deb https://packages.example/apt cloud-sdk-bookworm main\ndeb [arch=amd64] http://ftp.example/debian/ bookworm main\n"
    )
    assert debian_mirror("bookworm", [deb822]) == "http://mirror.example/debian"
    assert debian_mirror("bookworm", [one_line]) == "http://ftp.example/debian/"
    assert debian_mirror("trixie", [deb822, one_line]) == "http://deb.debian.org/debian"
