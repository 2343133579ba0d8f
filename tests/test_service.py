"""The BentoML service end to end: a tiny champion imported into a temporary BENTOML_HOME, a real `bentoml serve`
subprocess on 127.0.0.1, and `bentoml build` of bentofile.yaml (offline). Also the serve settings and the
package stage's import step.

The server fixture is session-scoped (tests/test_demo_page.py uses it too) and stopped by its PID.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from pipeline.config import load_serve_settings
from pipeline.errors import ConfigError
from pipeline.heads import save_pair_model
from pipeline.heads.pair import load_sequence_classifier
from pipeline.metrics import SCORE_BUCKETS, TOKEN_BUCKETS
from pipeline.models import ModelSettings, load_tokenizer
from pipeline.paths import MODEL_CARD_FILE
from serving.ports import free_local_port
from tests.conftest import OFFLINE_ENV, REPO, running_server
from tests.support.toy_models import bi_pair_model

MODEL_NAME = "korean-sts-similarity"
REGISTRY_VERSION = "7"
PAIRS = [
    ("한 남자가 기타를 치고 있다.", "남자가 기타를 연주하고 있다."),
    ("한 여자가 양파를 썰고 있다.", "남자가 피자에 치즈를 뿌리고 있다."),
    ("오늘 날씨가 정말 좋네요.", "오늘은 날씨가 매우 좋습니다."),
    ("아이들이 공원에서 놀고 있다.", "고양이가 창밖을 보고 있다."),
    ("숙소 위치가 역에서 가까워요.", "이 정책은 내년부터 시행됩니다."),
    ("  공백이   많은\t문장.  ", "공백이 많은 문장."),
]
# One model copy keeps the test server small; a 2 s body deadline keeps the stalled-client test short (shipped: 10 s).
SERVER_ENV = {"KSTS_SERVE_WORKERS": "1", "KSTS_SERVE_BODY_TIMEOUT_SECONDS": "2"}


def python_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def run_python(code: str, home: Path, timeout: float = 300, offline: bool = False) -> str:
    """Run code in a fresh interpreter with BENTOML_HOME=home (BentoML reads it at import); returns stdout.

    offline: under `unshare -n` (no network namespace at all) where the machine allows it.
    """
    command = [sys.executable, "-c", code]
    if offline and shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-n", *command]
    done = subprocess.run(command, cwd=REPO, env=python_env(home), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


SHARED = pytest.StashKey[dict]()


def shared(request, key: str, make):
    """One value per test session even across modules.

    tests/test_demo_page.py imports these fixtures, and an imported fixture is a second definition with its
    own cache: without this, each module would start its own server. make(stack) builds the value; contexts
    entered on stack close when the session ends.
    """
    config = request.config
    if SHARED not in config.stash:
        stack = contextlib.ExitStack()
        config.add_cleanup(stack.close)
        config.stash[SHARED] = {"stack": stack}
    store = config.stash[SHARED]
    if key not in store:
        store[key] = make(store["stack"])
    return store[key]


@pytest.fixture(scope="session")
def champion_folder(request, tiny_bert, tmp_path_factory) -> Path:
    return shared(request, "champion_folder", lambda _: make_champion_folder(tiny_bert, tmp_path_factory))


def make_champion_folder(tiny_bert, tmp_path_factory) -> Path:
    """A tiny cross-encoder pair model whose scores on PAIRS differ and straddle 3.0.

    A random head gives nearly one score for every pair (a mix-up of answers would go unseen), so the head
    reads the direction along which the pooled outputs of PAIRS differ most, scaled to scores of 3.0 +- ~0.6.
    (Stronger scaling would amplify float noise: single vs batched forward passes must agree to 1e-5.)
    """
    import torch

    from pipeline.calibration import Calibration
    from serving.text import normalize_text

    folder = tmp_path_factory.mktemp("champion") / "model"
    torch.manual_seed(0)
    model = load_sequence_classifier(str(tiny_bert)).eval()
    tokenizer = load_tokenizer(str(tiny_bert))
    tokenizer.model_max_length = 128
    first, second = zip(*[(normalize_text(a), normalize_text(b)) for a, b in PAIRS], strict=True)
    with torch.no_grad():
        pooled = model.bert(**tokenizer(list(first), list(second), padding=True, return_tensors="pt")).pooler_output
        centered = pooled - pooled.mean(dim=0)
        direction = torch.linalg.svd(centered, full_matrices=False).Vh[0]
        weight = direction * 0.5 / (centered @ direction).abs().max()
        model.classifier.weight.copy_(weight[None, :])
        model.classifier.bias.copy_(np.log(3 / 2) - (pooled.mean(dim=0) @ weight)[None])  # sigmoid(log 1.5) * 5 = 3
    save_pair_model(model, tokenizer, ModelSettings(head="cross", base_model="tiny-bert", hangul_only=False), folder)
    # a calibration that keeps 3.0 in place (the verdicts) but moves every other score: the service must apply it
    Calibration([0.0, 3.0, 5.0], [0.5, 3.0, 4.8], True, "test: a fixed map").save(folder)
    (folder / MODEL_CARD_FILE).write_text("# Model card: the tiny test champion\n\n한국어 문장 유사도\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def offline_scores(champion_folder) -> np.ndarray:
    from pipeline.scoring import PairScorer

    return PairScorer.from_folder(champion_folder, device="cpu").score(PAIRS)


@pytest.fixture(scope="session")
def bento_store(request, champion_folder, tmp_path_factory) -> dict[str, str]:
    return shared(request, "bento_store", lambda _: make_bento_store(champion_folder, tmp_path_factory))


def make_bento_store(champion_folder: Path, tmp_path_factory) -> dict[str, str]:
    """A BENTOML_HOME holding the champion, imported twice (the second import must reuse the first)."""
    home = tmp_path_factory.mktemp("bentoml_home")
    labels = {"registry_version": REGISTRY_VERSION}
    code = (
        "from pipeline.stages.package import import_pair_model\n"
        f"args = ({str(champion_folder)!r}, {MODEL_NAME!r}, {labels!r}, {{'model_uri': 'test'}})\n"
        "print(import_pair_model(*args)); print(import_pair_model(*args))\n"
    )
    first, second = run_python(code, home).split()
    assert first == second, "re-importing the same folder and labels must reuse the stored model"
    return {"home": str(home), "tag": first}


@contextlib.contextmanager
def bentoml_server(target: str, home: Path, env: dict[str, str]):
    """`bentoml serve TARGET` on a free loopback port in its own process group; yields the base URL, then stops it by PID.

    Each server gets a BENTOML_HOME of its own that links the store's models and bentos: BentoML keeps its
    Prometheus files in BENTOML_HOME and clears them when a server starts, so two servers on one home would
    wipe each other's /metrics.
    """
    port = free_local_port()
    server_home = home / f"server-{port}"
    server_home.mkdir()
    for name in ("models", "bentos"):
        (home / name).mkdir(exist_ok=True)
        (server_home / name).symlink_to(home / name, target_is_directory=True)
    command = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    log = home / f"serve-{port}.log"
    with running_server(f"bentoml serve {target}", command, f"{url}/readyz", log, cwd=REPO, env=python_env(server_home, **env)):
        yield url


@pytest.fixture(scope="session")
def served(request, bento_store) -> str:
    """The service from the repository (`bentoml serve service:KoreanSimilarity`); its base URL."""
    home = Path(bento_store["home"])
    target = "service:KoreanSimilarity"
    return shared(request, "served", lambda stack: stack.enter_context(bentoml_server(target, home, SERVER_ENV)))


def post(url: str, path: str, body=None) -> httpx.Response:
    """JSON body, or raw bytes sent as they are (labelled application/json)."""
    if isinstance(body, bytes):
        return httpx.post(f"{url}{path}", content=body, headers={"Content-Type": "application/json"}, timeout=60)
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def simultaneous_posts(url: str, jobs: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Each (path, JSON body) posted from a thread and client of its own, all released at once by a barrier: requests
    that reach the server within milliseconds, as concurrent users' do, so adaptive batching has a queue to merge
    (a client built per request instead spreads them out when other work holds the CPU)."""
    start = threading.Barrier(len(jobs))

    def send(job: tuple[str, dict]) -> httpx.Response:
        path, body = job
        with httpx.Client(timeout=60) as client:
            start.wait(timeout=60)
            return client.post(f"{url}{path}", json=body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(send, jobs))


def pair_body(pair: tuple[str, str]) -> dict[str, str]:
    return {"sentence1": pair[0], "sentence2": pair[1]}


# --- settings -------------------------------------------------------------------------------------------


def serve_section(**changes) -> str:
    """params.yaml text with only the repository's `serve:` section, changed as asked."""
    section = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["serve"]
    return yaml.safe_dump({"model": {"name": "x"}, "serve": {**section, **changes}})


def test_serve_settings_come_from_the_serve_section_then_the_environment(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(serve_section(max_batch_size=8, device="cpu"), encoding="utf-8")
    settings = load_serve_settings(params, {"KSTS_SERVE_BATCHING": "false", "KSTS_SERVE_MAX_LATENCY_MS": "900"})
    assert (settings.max_batch_size, settings.device, settings.batching, settings.max_latency_ms) == (8, "cpu", False, 900)
    assert settings.model_tag == f"{MODEL_NAME}:latest"
    assert load_serve_settings(params, {"KSTS_SERVE_MODEL_NAME": "m:v1", "KSTS_SERVE_DEVICE": "null"}).model_tag == "m:v1"
    with pytest.raises(ConfigError, match="not found"):
        load_serve_settings(tmp_path / "absent.yaml", {})


@pytest.mark.parametrize(
    ("params_text", "environ", "message"),
    [
        (serve_section(max_batch_sise=8), {}, r"serve: unknown key\(s\) \['max_batch_sise'\]"),
        (serve_section(workers="two"), {}, "serve.workers: Input should be a valid integer"),
        (serve_section(workers=0), {}, "serve.workers: Input should be greater than or equal to 1"),
        (serve_section(max_batch_size=1), {}, "greater than or equal to 2"),
        (serve_section(gate_shift_percentile=0), {}, "^serve.gate_shift_percentile: Input should be greater than 0, got 0$"),
        (serve_section(gate_shift_percentile=150), {}, "^serve.gate_shift_percentile: Input should be less than or equal to 100"),
        ("model: {name: x}\n", {}, r"serve: Input should be a valid dictionary"),
        (serve_section(), {"KSTS_SERVE_BATCHING": "maybe"}, "KSTS_SERVE_BATCHING"),
        (serve_section(), {"KSTS_SERVE_WORKERS": "2.5"}, "KSTS_SERVE_WORKERS"),
        (serve_section(), {"KSTS_SERVE_WORKERS": "null"}, "KSTS_SERVE_WORKERS"),
    ],
)
def test_serve_settings_reject_bad_values(tmp_path, params_text, environ, message):
    params = tmp_path / "params.yaml"
    params.write_text(params_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_serve_settings(params, environ)


def test_the_repository_params_give_valid_settings():
    load_serve_settings(REPO / "params.yaml", {})


def test_import_refuses_a_folder_that_is_not_a_pair_model(tiny_bert, tmp_path):
    code = f"from pipeline.stages.package import import_pair_model\nimport_pair_model({str(tiny_bert)!r}, 'x')\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=python_env(tmp_path), capture_output=True, text=True)
    assert done.returncode != 0 and "not a fine-tuned pair model" in done.stderr


def test_champion_from_report(tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.stages.package import champion_from_report

    report = tmp_path / "register.json"
    with pytest.raises(PipelineError, match="run the register stage"):
        champion_from_report(report)
    fields = {"model_name": MODEL_NAME, "champion_version": "3", "alias": "champion", "champion_uri": "models:/m@champion"}
    report.write_text(json.dumps(fields), encoding="utf-8")
    assert champion_from_report(report)["registry_version"] == "3"


# --- the running service ------------------------------------------------------------------------------


def test_health_and_readiness(served):
    for path in ("/healthz", "/readyz", "/livez"):
        assert httpx.get(f"{served}{path}", timeout=10).status_code == 200


def test_single_pair_scores_equal_offline_scoring(served, offline_scores, bento_store):
    gaps = np.diff(np.sort(offline_scores))
    assert gaps.min() > 1e-4 and min(offline_scores) < 3 <= max(offline_scores), f"pairs must differ: {offline_scores}"
    for pair, expected in zip(PAIRS, offline_scores, strict=True):
        response = post(served, "/similarity", pair_body(pair))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["score"] == pytest.approx(expected, abs=1e-5)
        assert answer["similar"] is bool(expected >= 3.0)
        assert answer["probability"] == pytest.approx(answer["score"] / 5)
        assert response.headers["X-Model-Name"] == MODEL_NAME
        assert response.headers["X-Model-Version"] == bento_store["tag"].split(":")[1]
        assert response.headers["X-Model-Registry-Version"] == REGISTRY_VERSION
        assert response.headers["X-Model-Threshold"] == "3.0"  # the champion's settings: the default, KLUE's 3.0


def test_batch_equals_singles_and_keeps_order(served, offline_scores):
    response = post(served, "/similarity_batch", {"pairs": [pair_body(pair) for pair in PAIRS]})
    assert response.status_code == 200, response.text
    scores = [item["score"] for item in response.json()]
    np.testing.assert_allclose(scores, offline_scores, atol=1e-5)
    assert [item["similar"] for item in response.json()] == [bool(s >= 3.0) for s in offline_scores]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served, offline_scores):
    """Adaptive batching merges concurrent requests into one forward pass: answers must not be mixed up."""
    jobs = [(index % len(PAIRS), [pair_body(PAIRS[index % len(PAIRS)])]) for index in range(24)]
    jobs += [(None, [pair_body(pair) for pair in PAIRS[::-1]])] * 4
    responses = simultaneous_posts(served, [("/similarity_batch", {"pairs": pairs}) for _, pairs in jobs])
    for (index, _), response in zip(jobs, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = offline_scores[::-1] if index is None else [offline_scores[index]]
        np.testing.assert_allclose([item["score"] for item in response.json()], expected, atol=1e-5)


def test_swagger_ui_and_openapi_with_korean_examples(served):
    assert httpx.get(f"{served}/", timeout=10).status_code == 200
    spec = httpx.get(f"{served}/docs.json", timeout=10)
    assert spec.status_code == 200, spec.text
    schema = spec.json()["paths"]["/similarity"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["sentence1"]["example"] == "오늘 날씨가 정말 좋네요."
    assert "/similarity_batch" in spec.json()["paths"]


def test_demo_page_is_served_without_external_assets(served):
    page = httpx.get(f"{served}/demo/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="sentence1"' in page.text and 'id="compare"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert httpx.get(f"{served}/demo", timeout=10, follow_redirects=True).status_code == 200


SETTINGS = load_serve_settings(REPO / "params.yaml", SERVER_ENV)
TOO_MANY = {"pairs": [{"sentence1": "가", "sentence2": "나"}] * (SETTINGS.max_pairs_per_request + 1)}
TOO_LONG = {"sentence1": "가" * (SETTINGS.max_chars_per_sentence + 1), "sentence2": "나"}
HUGE = json.dumps({"sentence1": "x" * (SETTINGS.max_request_bytes + 10), "sentence2": "y"}).encode()
BAD_INPUTS = [
    # (name, path, json body or raw bytes, status, text the message must contain)
    ("empty sentence", "/similarity", {"sentence1": "", "sentence2": "나"}, 400, "at least 1 character"),
    ("blank sentence", "/similarity", {"sentence1": " \t ", "sentence2": "나"}, 400, "empty or only whitespace"),
    ("zero-width only", "/similarity", {"sentence1": "\u200b\u200b", "sentence2": "나"}, 400, "invisible characters"),
    ("byte-order mark only", "/similarity_batch", {"pairs": [{"sentence1": "나", "sentence2": "\ufeff "}]}, 400, "invisible"),
    ("number", "/similarity", {"sentence1": 5, "sentence2": "나"}, 400, "valid string"),
    ("null", "/similarity", {"sentence1": None, "sentence2": "나"}, 400, "valid string"),
    ("list for a sentence", "/similarity", {"sentence1": ["가"], "sentence2": "나"}, 400, "valid string"),
    ("missing sentence2", "/similarity", {"sentence1": "가"}, 400, "Field required"),
    ("empty object", "/similarity", {}, 400, "Field required"),
    ("not an object", "/similarity", [1, 2], 400, "should be an object"),
    ("invalid JSON", "/similarity", b'{"sentence1": "x",', 400, "Invalid JSON"),
    ("empty body", "/similarity", b"", 400, "Field required"),  # BentoML reads an empty body as {}
    ("not UTF-8", "/similarity", b"\xff\xfe", 400, "Invalid JSON"),
    ("sentence too long", "/similarity", TOO_LONG, 400, f"at most {SETTINGS.max_chars_per_sentence} characters"),
    ("body too large", "/similarity", HUGE, 413, f"the limit is {SETTINGS.max_request_bytes}"),
    ("no pairs", "/similarity_batch", {"pairs": []}, 400, "at least 1 item"),
    ("too many pairs", "/similarity_batch", TOO_MANY, 400, f"at most {SETTINGS.max_pairs_per_request} items"),
    ("pairs not a list", "/similarity_batch", {"pairs": "가 나"}, 400, "valid array"),
    ("pair missing a field", "/similarity_batch", {"pairs": [{"sentence1": "가"}]}, 400, "Field required"),
    ("pair with a number", "/similarity_batch", {"pairs": [{"sentence1": "가", "sentence2": 1}]}, 400, "valid string"),
    ("unknown route", "/similarity_v2", {"sentence1": "가", "sentence2": "나"}, 404, ""),
]


@pytest.mark.parametrize(("name", "path", "body", "status", "message"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_a_4xx_with_a_message(served, name, path, body, status, message):
    response = post(served, path, body)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:500]}"
    assert message in response.text, f"{name}: {response.text[:500]}"
    if status == 400:
        assert response.json()["detail"], "pydantic's error list names the field"


def test_chunked_oversized_upload_is_refused_with_413(served):
    def chunks():
        for _ in range(SETTINGS.max_request_bytes // 65536 + 2):
            yield b"x" * 65536

    response = httpx.post(f"{served}/similarity", content=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_get_on_an_api_is_405(served):
    assert httpx.get(f"{served}/similarity", timeout=10).status_code == 405


# --- the Bento ---------------------------------------------------------------------------------------


def test_bentoml_build_makes_a_bento_offline_that_serves(bento_store, champion_folder, offline_scores):
    """`bentoml build` of bentofile.yaml with no network; the Bento holds the code and params, names the model,
    exports with the model inside, serves the same scores, and answers overload with 503 (not 500)."""
    home = Path(bento_store["home"])
    started = time.monotonic()
    output = run_python(
        f"from pipeline.stages.package import build_bento\nprint(build_bento('bentofile.yaml', '.', {bento_store['tag']!r}))\n",
        home,
        offline=True,
    )
    seconds = time.monotonic() - started
    tag = output.strip().splitlines()[-1]
    name, version = tag.split(":")
    bento = home / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    assert manifest["args"] == {"model_tag": bento_store["tag"]}  # the exact champion, not `latest`
    assert [str(model["tag"]) for model in manifest["services"][0]["models"]] == [bento_store["tag"]]
    for relative in (
        "service.py",
        "params.yaml",
        "pipeline/scoring.py",
        "pipeline/heads/bi.py",
        "serving/guard.py",
        "serving/demo.html",
    ):
        assert (bento / "src" / relative).is_file(), relative
    copied = {path.relative_to(bento / "src").as_posix() for path in (bento / "src").rglob("*") if path.is_file()}
    assert all(
        name in {"service.py", "params.yaml", "bentofile.yaml"} or name.startswith(("pipeline/", "serving/")) for name in copied
    )
    assert not [name for name in copied if "__pycache__" in name], copied
    requirements = (bento / "env/python/requirements.txt").read_text(encoding="utf-8")
    assert "torch==2.13.0" in requirements and "transformers==" in requirements
    assert seconds < 120, f"bentoml build took {seconds:.0f} s"

    archive = home / "exported.bento"
    run_python(f"import bentoml\nbentoml.export_bento({tag!r}, {str(archive)!r})\n", home, offline=True)
    with tarfile.open(archive) as bundle:
        names = bundle.getnames()
    model_version = bento_store["tag"].split(":")[1]
    assert any(n.endswith(f"models/{MODEL_NAME}/{model_version}/pair_model/similarity.json") for n in names), names[:20]

    # A newer model in the store must not change what the Bento serves.
    newer = home / "newer-model"
    shutil.copytree(champion_folder, newer)
    ModelSettings(head="cross", base_model="another", hangul_only=False).save(newer)
    run_python(
        f"from pipeline.stages.package import import_pair_model\nimport_pair_model({str(newer)!r}, {MODEL_NAME!r})\n", home
    )

    # Served from the Bento, with a 1 ms queue limit (KSTS_SERVE_* work there too): a burst must be refused
    # with 503 + a clear message + Retry-After, never a 500; lone requests still answer.
    with bentoml_server(tag, home, {**SERVER_ENV, "KSTS_SERVE_MAX_LATENCY_MS": "1"}) as url:
        response = post(url, "/similarity", pair_body(PAIRS[0]))
        assert response.status_code == 200, response.text
        assert response.json()["score"] == pytest.approx(offline_scores[0], abs=1e-5)
        assert response.headers["X-Model-Version"] == bento_store["tag"].split(":")[1]
        body = {"pairs": [pair_body(pair) for pair in PAIRS]}
        burst = simultaneous_posts(url, [("/similarity_batch", body)] * 96)
        statuses = sorted({r.status_code for r in burst})
        assert set(statuses) <= {200, 503} and 503 in statuses, statuses
        refused = next(r for r in burst if r.status_code == 503)
        assert "over capacity" in refused.json()["error"] and refused.headers["Retry-After"] == "1"
        assert refused.headers["X-Model-Name"] == MODEL_NAME


# --- an optimized runtime and the embedding cache ----------------------------------------------------------


def test_a_bi_champion_served_by_onnx_int8_answers_as_offline_and_counts_its_cache(tiny_bert, tmp_path):
    """The package stage's label picks the runtime; scores equal offline scoring with that runtime; repeated
    sentences are served from the cache and counted on /metrics."""
    from serving.runtime import load_scorer

    folder = bi_pair_model(tiny_bert, tmp_path / "bi", runtime="onnx-int8")
    offline = load_scorer(folder, "onnx-int8", threads=1).score(PAIRS)
    home = tmp_path / "home"
    labels = {"runtime": "onnx-int8"}
    code = f"from pipeline.stages.package import import_pair_model\nprint(import_pair_model({str(folder)!r}, 'bi', {labels!r}))\n"
    tag = run_python(code, home).split()[-1]
    with bentoml_server("service:KoreanSimilarity", home, {**SERVER_ENV, "KSTS_SERVE_MODEL_NAME": tag}) as url:
        for _ in range(2):  # the second round: every sentence is a cache hit
            response = post(url, "/similarity_batch", {"pairs": [pair_body(pair) for pair in PAIRS]})
            assert response.status_code == 200 and response.headers["x-model-runtime"] == "onnx-int8"
            # int8 activations are quantized per forward pass (dynamic ranges), so a score depends a little on
            # which sentences share the pass: the service's batches of 4 pairs vs offline's one batch
            np.testing.assert_allclose([item["score"] for item in response.json()], offline, atol=5e-3)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    counts = {
        result: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        for result in ("hit", "miss")
        if line.startswith("embedding_cache_lookups_total{") and f'result="{result}"' in line
    }
    from serving.text import normalize_text

    distinct = len({normalize_text(sentence) for pair in PAIRS for sentence in pair})  # the cache keys
    assert counts == {"hit": 4 * len(PAIRS) - distinct, "miss": distinct}, counts


def test_a_multipart_body_is_refused_with_415_not_a_server_error(served):
    """A broken multipart part made BentoML's form parser answer 500; the APIs take JSON only."""
    broken = b'--b\r\nContent-Disposition: form-data; name="sentence1"\r\n\r\n\xea\xb0\x80'  # no closing boundary
    for path in ("/similarity", "/similarity_batch"):
        response = httpx.post(
            f"{served}{path}", content=broken, headers={"content-type": "multipart/form-data; boundary=b"}, timeout=30
        )
        assert response.status_code == 415 and "JSON" in response.json()["error"], response.text


def test_responses_carry_security_headers_and_the_demo_page_a_csp_without_inline_sources(served):
    api = post(served, "/similarity", pair_body(PAIRS[0]))
    page = httpx.get(f"{served}/demo/", timeout=30)
    for response in (api, page):
        assert response.headers["x-content-type-options"] == "nosniff" and response.headers["referrer-policy"] == "no-referrer"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in policy


def test_with_an_api_key_the_apis_need_it_and_health_and_metrics_stay_open(bento_store):
    home = Path(bento_store["home"])
    with bentoml_server("service:KoreanSimilarity", home, {**SERVER_ENV, "KSTS_SERVE_API_KEY": "s3cret"}) as url:
        body = pair_body(PAIRS[0])
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
            refused = httpx.post(f"{url}/similarity", json=body, headers=headers, timeout=30)
            assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
            assert "s3cret" not in refused.text
        batch = httpx.post(f"{url}/similarity_batch", json={"pairs": [body]}, timeout=30)
        assert batch.status_code == 401
        allowed = httpx.post(f"{url}/similarity", json=body, headers={"authorization": "Bearer s3cret"}, timeout=30)
        assert allowed.status_code == 200 and 0 <= allowed.json()["score"] <= 5
        for path in ("/healthz", "/readyz", "/metrics", "/demo/"):
            assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path


def histogram(url: str, name: str) -> dict[str, float]:
    """A /metrics histogram's series (bucket bounds, count), summed over workers."""
    series: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name}_bucket{{") or line.startswith(f"{name}_count"):
            key = line.split('le="')[1].split('"')[0] if "_bucket{" in line else "count"
            series[key] = series.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return series


def test_metrics_show_the_answered_scores_and_input_tokens_in_the_analysis_buckets(served, offline_scores):
    before_scores, before_tokens = histogram(served, "predicted_score"), histogram(served, "input_tokens")
    response = post(served, "/similarity_batch", {"pairs": [pair_body(pair) for pair in PAIRS[:3]]})
    assert response.status_code == 200
    scores, tokens = histogram(served, "predicted_score"), histogram(served, "input_tokens")
    assert scores["count"] - before_scores.get("count", 0) == 3 and tokens["count"] - before_tokens.get("count", 0) == 6
    assert set(map(float, SCORE_BUCKETS)) <= {float(key) for key in scores if key != "count"}
    assert set(map(float, TOKEN_BUCKETS)) <= {float(key) for key in tokens if key != "count"}
    for bound in SCORE_BUCKETS:  # each answered score lands in its bucket
        key = next(key for key in scores if key != "count" and float(key) == bound)
        added = scores[key] - before_scores.get(key, 0)
        assert added == sum(score <= bound for score in offline_scores[:3]), bound


def test_the_demo_page_links_the_model_card(served):
    page = httpx.get(f"{served}/demo/", timeout=30)
    assert 'href="model-card"' in page.text
    card = httpx.get(f"{served}/demo/model-card", timeout=30)
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    assert card.text.startswith("# Model card: the tiny test champion") and "한국어" in card.text
