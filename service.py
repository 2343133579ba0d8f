"""The champion Korean sentence-similarity model as a BentoML 1.4 service.

    bentoml serve service:KoreanSimilarity          # from the repository, model from the BentoML model store
    bentoml serve korean_sts:latest                 # from the Bento built by the package stage

APIs (POST, JSON): /similarity (one pair, one forward pass) and /similarity_batch (1-64 pairs; adaptive
batching: concurrent requests share forward passes, so under load send pairs here, even one at a time).
Both are sync APIs that BentoML runs one at a time per worker (threads=1), on torch_threads threads.
Every response carries X-Model-Name, X-Model-Version, X-Model-Runtime, X-Model-Threshold (`similar` is score >= it:
the model's own, from evaluate.threshold) and X-Model-Registry-Version when known. The model runs on the runtime the
package stage chose behind its accuracy gate (the model's label `runtime`: torch, onnx or onnx-int8; pipeline/runtimes/);
a bi-encoder keeps an LRU cache of sentence embeddings (serve.embedding_cache_size), counted on /metrics as
embedding_cache_lookups_total.
GET /demo/ is a page to try it by hand; /healthz, /readyz and /metrics are BentoML's; / is Swagger UI.
Settings: pipeline/config ServeSettings (params.yaml `serve:`, KSTS_SERVE_* environment variables).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one process per worker already uses the cores

import bentoml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from serving.contract import VISIBLE_TEXT, documented_spec
from serving.demo import MODEL_CARD, demo_app
from serving.guard import RequestGuard
from serving.isolation import PairFailure, answers_of, raise_failures, refuse_poison, score_isolated
from serving.pair_model import MODEL_CARD_FILE, PAIR_FOLDER  # PAIR_FOLDER: the model's folder in the store
from serving.runtime import load_scorer
from serving.scale import MAX_SCORE, SCORE_BUCKETS, TOKEN_BUCKETS
from serving.settings import SERVE_ENV_PREFIX, load_serve_settings

HERE = Path(__file__).resolve().parent
SETTINGS = load_serve_settings(HERE / "params.yaml")
# The model: KSTS_SERVE_MODEL_NAME if set, else the Bento's build argument `model_tag` (the package stage pins
# the champion's exact tag: `bentoml build --arg model_tag=NAME:VERSION`), else serve.model_name at :latest.
BENTO_ARGS = bentoml.use_arguments()
MODEL_TAG = (
    SETTINGS.model_tag
    if f"{SERVE_ENV_PREFIX}MODEL_NAME" in os.environ
    else getattr(BENTO_ARGS, "model_tag", None) or SETTINGS.model_tag
)
EXAMPLE_PAIR = {"sentence1": "오늘 날씨가 정말 좋네요.", "sentence2": "오늘은 날씨가 매우 좋습니다."}
EXAMPLE_PAIRS = [EXAMPLE_PAIR, {"sentence1": "숙소 위치가 역에서 가까워요.", "sentence2": "이 정책은 내년부터 시행됩니다."}]
API_KEY_VARIABLE = "KSTS_SERVE_API_KEY"  # set: every API needs Authorization: Bearer <key> (health and metrics stay open)
MODEL_HEADERS: dict[str, str] = {}  # filled once the model is loaded; added to every response by RequestGuard
OVERLOADED = json.dumps(
    {"error": f"over capacity: this request would wait more than {SETTINGS.max_latency_ms} ms in the batch queue; retry later"}
).encode()

logger = logging.getLogger("bentoml.service.korean_sts")
CACHE_LOOKUPS = bentoml.metrics.Counter(
    name="embedding_cache_lookups",
    documentation="Sentence-embedding cache lookups in this worker (bi head): hit = served from memory, miss = encoded",
    labelnames=["result"],
)
# What the service answers and reads, in the buckets of the analyze stage's test-split distributions (drift: docs/serving.md)
PREDICTED_SCORES = bentoml.metrics.Histogram(
    name="predicted_score", documentation="Similarity scores answered (0-5), one per pair", buckets=SCORE_BUCKETS
)
INPUT_TOKENS = bentoml.metrics.Histogram(
    name="input_tokens", documentation="Tokens the model read per sentence (before truncation)", buckets=TOKEN_BUCKETS
)
STALLED_REQUESTS = bentoml.metrics.Counter(
    name="stalled_requests",
    documentation="API requests whose body did not arrive within serve.body_timeout_seconds (answered 408, connection closed)",
)


def _not_blank(text: str) -> str:
    if not VISIBLE_TEXT.search(text):
        raise ValueError("sentence is empty or only whitespace or invisible characters")
    return text


Sentence = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=SETTINGS.max_chars_per_sentence),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT.pattern}),  # documents _not_blank's rule
]

# `example` (OpenAPI 3.0, singular) is what Swagger UI puts in its sample request.
FirstSentence = Annotated[Sentence, Field(description="sentence 1", json_schema_extra={"example": EXAMPLE_PAIR["sentence1"]})]
SecondSentence = Annotated[Sentence, Field(description="sentence 2", json_schema_extra={"example": EXAMPLE_PAIR["sentence2"]})]


class Pair(BaseModel):
    """Two Korean sentences to compare."""

    model_config = ConfigDict(json_schema_extra={"example": EXAMPLE_PAIR})

    sentence1: FirstSentence
    sentence2: SecondSentence


class Similarity(BaseModel):
    """How similar a pair is."""

    score: float = Field(description="similarity from 0 (unrelated) to 5 (same meaning)")
    similar: bool = Field(description="score >= the model's threshold (the X-Model-Threshold header)")
    probability: float = Field(description="score / 5: a 0-1 value, not a calibrated probability")


PairList = Annotated[
    list[Pair],
    Field(
        min_length=1,
        max_length=SETTINGS.max_pairs_per_request,
        description=f"1 to {SETTINGS.max_pairs_per_request} sentence pairs",
        json_schema_extra={"example": EXAMPLE_PAIRS},
    ),
]


def to_result(score: float, threshold: float) -> Similarity:
    """One 0-5 score -> the API's result; similar at the served model's threshold."""
    score = float(score)
    return Similarity(score=score, similar=score >= threshold, probability=score / MAX_SCORE)


Answers = answers_of(Similarity)  # a failed pair fails its own request only (serving/isolation.py)


@bentoml.asgi_app(demo_app, path="/demo", name="demo")
@bentoml.service(
    name="korean_sts",
    workers=SETTINGS.workers,
    threads=1,  # one batch at a time per worker; parallelism comes from workers and torch_threads
    traffic={"timeout": SETTINGS.timeout_seconds},
    logging={"access": {"enabled": False}},  # the per-request access log costs much CPU (stack facts)
)
class KoreanSimilarity:
    """Korean sentence similarity (0-5) with the champion model of the korean-sts pipeline."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        stored = self.model_ref
        self.runtime = stored.info.labels.get("runtime", "torch")  # what register chose behind its gate
        # torch-free on an ONNX runtime: a lean Bento ships neither torch nor the pipeline package (serving/runtime.py)
        self.scorer = load_scorer(
            stored.path_of(PAIR_FOLDER), self.runtime, SETTINGS.torch_threads, SETTINGS.embedding_cache_size, SETTINGS.device
        )
        self.cache_counts = (0, 0)
        MODEL_HEADERS.update(
            {
                "X-Model-Name": stored.tag.name,
                "X-Model-Version": str(stored.tag.version),
                "X-Model-Runtime": self.runtime,
                "X-Model-Threshold": str(self.scorer.settings.threshold),
            }
        )
        card = Path(stored.path_of(PAIR_FOLDER)) / MODEL_CARD_FILE
        if card.is_file():
            MODEL_CARD["text"] = card.read_text(encoding="utf-8")
        registry_version = stored.info.labels.get("registry_version")
        if registry_version:
            MODEL_HEADERS["X-Model-Registry-Version"] = registry_version
        logger.info(
            "loaded %s on %s (head %s, runtime %s, threads %d, batching %s)",
            stored.tag,
            self.scorer.device,
            self.scorer.settings.head,
            self.runtime,
            SETTINGS.torch_threads,
            SETTINGS.batching,
        )

    def _score(self, pairs: list[Pair]) -> list[Similarity | PairFailure]:
        """Each pair's answer; a pair whose forward pass fails even alone gets a PairFailure, the others their scores."""
        scores = score_isolated(self._forward, [(p.sentence1, p.sentence2) for p in pairs])
        self._count_cache_lookups()
        answered = [score for score in scores if not isinstance(score, PairFailure)]
        for score in answered:
            PREDICTED_SCORES.observe(score)
        # every sentence, answered or not; the ONNX runtime counts from the forward passes' own tokenization
        for tokens in self.scorer.sentence_tokens([text for p in pairs for text in (p.sentence1, p.sentence2)]):
            INPUT_TOKENS.observe(tokens)
        return [score if isinstance(score, PairFailure) else to_result(score, self.scorer.settings.threshold) for score in scores]

    def _forward(self, pairs: list[tuple[str, str]]) -> Sequence[float]:
        refuse_poison(pairs)  # tests only: KSTS_SERVE_TEST_POISON, unset in production
        return self.scorer.score(pairs, batch_size=SETTINGS.forward_batch_size)

    def _count_cache_lookups(self) -> None:
        """The embedding cache's new hits and misses onto /metrics (bi head with serve.embedding_cache_size > 0)."""
        cache = self.scorer.model
        if not hasattr(cache, "hits"):
            return
        hits, misses = cache.hits, cache.misses
        CACHE_LOOKUPS.labels(result="hit").inc(hits - self.cache_counts[0])
        CACHE_LOOKUPS.labels(result="miss").inc(misses - self.cache_counts[1])
        self.cache_counts = (hits, misses)

    @bentoml.api(batchable=SETTINGS.batching, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms)
    def similarity_batch(self, pairs: PairList) -> Answers:
        """Scores for a list of sentence pairs, in order. Concurrent requests are batched together."""
        return self._score(pairs)  # BentoML splits the answers per request, then validates each: Answers

    @bentoml.api
    def similarity(self, sentence1: FirstSentence, sentence2: SecondSentence) -> Similarity:
        """Similarity of one sentence pair: score 0-5, similar (score >= the model's threshold), probability (score / 5).

        Answered on its own (one forward pass). Under concurrent load send pairs to similarity_batch, even one
        at a time: that API shares forward passes between concurrent requests.
        """
        return raise_failures(self._score([Pair(sentence1=sentence1, sentence2=sentence2)]))[0]


API_PATHS = ("/similarity", "/similarity_batch")
API_KEY = os.environ.get(API_KEY_VARIABLE) or None
KoreanSimilarity.add_asgi_middleware(
    RequestGuard,
    max_bytes=SETTINGS.max_request_bytes,
    api_paths=API_PATHS,
    openapi_document=lambda: documented_spec(KoreanSimilarity.openapi_spec.asdict(), API_PATHS, API_KEY is not None),
    model_headers=MODEL_HEADERS,
    overloaded_body=OVERLOADED,
    body_timeout_seconds=SETTINGS.body_timeout_seconds,
    on_stalled=STALLED_REQUESTS.inc,
    api_key=API_KEY,
)
