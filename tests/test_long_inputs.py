"""Long inputs and isolation in the service (issue 21).

Every runtime truncates where the trained model does (`input_token_limit`: model.max_length, capped at the
positions), so any sentence within serve.max_chars_per_sentence scores as the torch path scores it. Untruncated,
the ONNX graphs scored 129-512 tokens differently and failed with a 500 past 512, failing every request batched
with the long one. And whatever fails a forward pass fails only its own request (serving/isolation.py).

The long sentences are measured in the tiny RoBERTa's byte-level BPE (an emoji is 4 tokens, a jamo 3), whose
bi-encoder here truncates at 128 and has 512 positions. Servers: one per runtime, for this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import UnscorableInput
from pipeline.runtimes import RUNTIMES
from pipeline.scoring import PairScorer
from serving.isolation import POISON_VARIABLE, PairFailure, ScoringFailed, raise_failures, refuse_poison, score_isolated
from serving.runtime import load_scorer
from tests.conftest import REPO

# The service fixtures (shared with tests/test_service.py: one server per session).
from tests.support.toy_models import bi_pair_model
from tests.test_service import (  # noqa: F401
    PAIRS,
    SERVER_ENV,
    SETTINGS,
    bento_store,
    bentoml_server,
    champion_folder,
    pair_body,
    post,
    run_python,
    served,
    simultaneous_posts,
)

MAX_LENGTH = 128  # model.max_length in params.yaml: where training (and so every runtime) truncates
SHORT = "오늘 날씨가 정말 좋네요."
LONG = {  # name: (sentence, its tokens in the tiny RoBERTa with [CLS]/[SEP], untruncated)
    "Hangul, 129 tokens": ("가" * 127, 129),
    "emoji and Hangul, 511 tokens": ("😀" * 127 + "가", 511),
    "emoji and jamo, 513 tokens": ("😀" * 127 + "ㄱ", 513),
    "mixed scripts, ~1,500 tokens": (("a가😀ㄱ中 " * 115).strip(), 1496),
    "1,000 emoji": ("😀" * 1000, 4002),
    "1,000 jamo": ("ㄱ" * 1000, 3002),
    "Hangul words, 989 characters": (("한국어 문장 유사도 " * 90).strip(), 1262),
}
LONG_PAIRS = [(sentence, SHORT) for sentence, _ in LONG.values()] + [
    (LONG["1,000 emoji"][0], LONG["1,000 jamo"][0]),  # a pair of 1,000-character sentences
    (LONG["Hangul words, 989 characters"][0], LONG["mixed scripts, ~1,500 tokens"][0]),
]
POISON = "POISON-b71d"  # the test-only marker: a forward pass over a sentence holding it raises (serving/isolation.py)


def bi_model(encoder: Path, folder: Path) -> Path:
    """A bi-encoder pair model trained to truncate at MAX_LENGTH, with both ONNX graphs built beside it."""
    return bi_pair_model(encoder, folder, MAX_LENGTH, runtime="onnx-int8")  # the fp32 graph first, then its int8 graph


def tolerance(runtime: str) -> float:
    """How close a runtime's scores come to the torch path's: fp32 equal; int8 quantizes activations per forward pass,
    so its scores move a little with the batch (compared with its own offline scores: tests/test_service.py)."""
    return 5e-3 if runtime == "onnx-int8" else 1e-4


@pytest.fixture(scope="module")
def long_folder(tiny_roberta, tmp_path_factory) -> Path:
    return bi_model(tiny_roberta, tmp_path_factory.mktemp("long") / "bi")


def test_the_long_sentences_are_as_long_as_named_and_within_the_character_limit(long_folder):
    tokens = PairScorer.from_folder(long_folder).sentence_tokens([sentence for sentence, _ in LONG.values()])
    assert tokens == [count for _, count in LONG.values()]
    assert all(len(sentence) <= SETTINGS.max_chars_per_sentence for sentence, _ in LONG.values())


@pytest.mark.parametrize("encoder", ["tiny_roberta", "tiny_bert"])
def test_every_runtime_truncates_where_the_torch_path_does(request, tmp_path, encoder):
    """BERT (positions from 0, like e5: the issue's Expand error) and RoBERTa (byte-level tokens, padding offset)."""
    folder = bi_model(request.getfixturevalue(encoder), tmp_path / "bi")
    torch_scorer = PairScorer.from_folder(folder)
    assert max(torch_scorer.sentence_tokens([pair[0] for pair in LONG_PAIRS])) > 512  # past the graphs' positions
    reference = torch_scorer.score(LONG_PAIRS)
    assert torch_scorer.model.max_seq_length == MAX_LENGTH
    # int8 weights move scores by a few thousandths on these random tiny models; its tokens are fp32's (one encoder)
    for runtime, atol in (("onnx", 1e-4), ("onnx-int8", 0.02)):
        scorer = load_scorer(folder, runtime, threads=1)  # torch-free: the `tokenizers` library alone
        assert scorer.encoder.token_limit == MAX_LENGTH
        firsts = [pair[0] for pair in LONG_PAIRS]
        assert scorer.sentence_tokens(firsts) == torch_scorer.sentence_tokens(firsts)
        np.testing.assert_allclose(scorer.score(LONG_PAIRS), reference, atol=atol, err_msg=runtime)


def test_the_served_cross_champion_answers_long_pairs_as_offline(served, champion_folder):  # noqa: F811
    """The pair heads read both sentences in one sequence, truncated longest-first at model.max_length."""
    expected = PairScorer.from_folder(champion_folder, device="cpu").score(LONG_PAIRS)
    batch = post(served, "/similarity_batch", {"pairs": [pair_body(pair) for pair in LONG_PAIRS]})
    assert batch.status_code == 200, batch.text
    np.testing.assert_allclose([item["score"] for item in batch.json()], expected, atol=1e-5)
    single = post(served, "/similarity", pair_body(LONG_PAIRS[-1]))
    assert single.status_code == 200 and single.json()["score"] == pytest.approx(expected[-1], abs=1e-5)


# --- the isolation pieces, in process ----------------------------------------------------------------------


def score_unless_marked(pairs: list[tuple[str, str]]) -> list[float]:
    """A stand-in forward pass: refuses a batch holding a marked input, or fails outright on "broken"."""
    if any(first == "broken" for first, _ in pairs):
        raise RuntimeError("a fault of the service")
    if any(first == "marked" for first, _ in pairs):
        raise UnscorableInput("the model refused it")
    return [float(len(first)) for first, _ in pairs]


def test_a_failed_batch_is_scored_pair_by_pair_and_only_the_failed_pair_fails():
    answers = score_isolated(score_unless_marked, [("a", "x"), ("marked", "x"), ("abc", "x")])
    assert answers[0] == 1.0 and answers[2] == 3.0 and isinstance(answers[1], PairFailure) and answers[1].input_fault
    assert raise_failures([1.0, 3.0]) == [1.0, 3.0]
    with pytest.raises(ValidationError) as refused:  # BentoML answers a ValidationError with 400 and its errors
        raise_failures(answers)
    assert [(error["type"], error["loc"]) for error in refused.value.errors()] == [("unscorable_input", ("pairs", 1))]
    broken = score_isolated(score_unless_marked, [("broken", "x"), ("a", "x")])
    assert broken[1] == 1.0 and not broken[0].input_fault
    with pytest.raises(ScoringFailed):  # not the input's fault: a 500
        raise_failures(broken)


def test_the_test_poison_is_off_unless_its_variable_holds_a_marker():
    refuse_poison([(POISON, "x")])  # this process has no KSTS_SERVE_TEST_POISON: nothing is poisoned
    for value in ("", POISON):
        code = "from serving.isolation import POISON; print(POISON)"
        env = {**os.environ, "PYTHONPATH": str(REPO), POISON_VARIABLE: value}
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == (value or "None")  # empty counts as unset (it is in every sentence)


# --- through the service, every runtime --------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(RUNTIMES))
def bi_server(request, long_folder, tmp_path_factory):
    """(runtime, base URL, BENTOML_HOME) of a server of the long-input bi-encoder on that runtime, poison armed."""
    runtime = request.param
    home = tmp_path_factory.mktemp(f"home-{runtime}")
    code = (
        "from pipeline.stages.package import import_pair_model\n"
        f"print(import_pair_model({str(long_folder)!r}, 'long', {{'runtime': {runtime!r}}}))\n"
    )
    tag = run_python(code, home).split()[-1]
    env = {**SERVER_ENV, "KSTS_SERVE_MODEL_NAME": tag, POISON_VARIABLE: POISON}
    with bentoml_server("service:KoreanSimilarity", home, env) as url:
        yield runtime, url, home


@pytest.fixture(scope="module")
def offline(long_folder):
    """Offline scores of the long pairs and of PAIRS on each runtime (what the service must answer)."""
    scorers = {name: load_scorer(long_folder, name, threads=1) for name in RUNTIMES}
    return {name: (scorer.score(LONG_PAIRS), scorer.score(PAIRS)) for name, scorer in scorers.items()}


def test_long_inputs_get_200_and_the_trained_models_scores_on_both_apis(bi_server, offline):
    runtime, url, _ = bi_server
    expected = offline["torch"][0] if runtime != "onnx-int8" else offline[runtime][0]  # int8 against itself
    for pair, score in zip(LONG_PAIRS, expected, strict=True):
        single = post(url, "/similarity", pair_body(pair))
        assert single.status_code == 200, single.text
        assert single.headers["x-model-runtime"] == runtime
        assert single.json()["score"] == pytest.approx(score, abs=tolerance(runtime))
    batch = post(url, "/similarity_batch", {"pairs": [pair_body(pair) for pair in LONG_PAIRS]})
    assert batch.status_code == 200, batch.text
    np.testing.assert_allclose([item["score"] for item in batch.json()], expected, atol=tolerance(runtime))


def test_a_poisoned_request_fails_alone_and_the_requests_batched_with_it_get_their_answers(bi_server, offline):
    runtime, url, home = bi_server
    expected = offline[runtime][1]
    innocent = [("/similarity_batch", {"pairs": [pair_body(PAIRS[index % len(PAIRS)])]}) for index in range(24)]
    poisoned = [
        ("/similarity_batch", {"pairs": [pair_body((f"{POISON} 문장", "나"))]}),
        ("/similarity", pair_body(("나", f"독이 든 {POISON}"))),
    ]
    log = home / f"serve-{urlparse(url).port}.log"
    for _ in range(10):  # until the poison has shared a forward pass with other requests (adaptive batching decides)
        jobs = innocent[:12] + poisoned + innocent[12:]
        responses = simultaneous_posts(url, jobs)
        answers = responses[:12] + responses[14:]
        for index, response in enumerate(answers):
            assert response.status_code == 200, response.text
            assert response.json()[0]["score"] == pytest.approx(expected[index % len(PAIRS)], abs=tolerance(runtime))
        for response in responses[12:14]:
            assert response.status_code == 400, response.text
            body = response.json()
            assert body["error"] and [error["type"] for error in body["detail"]] == ["unscorable_input"]
            assert POISON not in response.text
        shared = [int(size) for size in re.findall(r"scoring a batch of (\d+) pairs failed", log.read_text())]
        if any(size > 1 for size in shared):  # the poisoned request holds one pair: others were in that batch
            return
    pytest.fail(f"the poisoned pair never shared a batch in 10 rounds; failed batch sizes: {shared}")
