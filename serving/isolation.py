"""One request's input fails only that request, whatever adaptive batch it shares a forward pass with.

BentoML merges concurrent /similarity_batch requests into one call of the API, and an exception there fails every
request in the call. So a batch whose scoring raises is scored again pair by pair (the call does not see where one
request ends and the next begins); a pair that fails alone becomes a PairFailure in its place. `raise_failures`
turns an answer that holds one into that request's error, as BentoML validates each request's answer (`Answers`):
400 when the input is at fault (UnscorableInput: the model refused it), else 500 (client input never gets a 5xx).

KSTS_SERVE_TEST_POISON is for tests only and unset in production, where nothing is poisoned: scoring a batch with a
sentence that contains its value raises UnscorableInput, so tests can poison a batch on purpose (since inputs are
truncated as in training, no real input is known to fail the model).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from serving.errors import UnscorableInput

POISON_VARIABLE = "KSTS_SERVE_TEST_POISON"
POISON = os.environ.get(POISON_VARIABLE) or None  # empty counts as unset: "" is in every sentence

logger = logging.getLogger("bentoml.service.korean_sts")


class ScoringFailed(RuntimeError):
    """A pair failed for a reason other than its input: the service's fault (500; the cause is chained and logged)."""


@dataclass(frozen=True)
class PairFailure:
    """A pair whose forward pass failed even alone, in its place among the answers."""

    error: Exception

    @property
    def input_fault(self) -> bool:
        return isinstance(self.error, UnscorableInput)


def refuse_poison(pairs: Sequence[tuple[str, str]]) -> None:
    """Tests only (KSTS_SERVE_TEST_POISON set): fail the batch if a sentence carries the marker."""
    if POISON is not None and any(POISON in text for pair in pairs for text in pair):
        raise UnscorableInput(f"a test-only poisoned sentence ({POISON_VARIABLE})")


def score_isolated(score: Callable[[list], Sequence[float]], pairs: list) -> list[float | PairFailure]:
    """score(pairs), or, if that raises, each pair scored alone: a pair that still fails is a PairFailure."""
    if len(pairs) > 1:
        try:
            return [float(value) for value in score(pairs)]
        except Exception as error:  # whatever failed, each pair is retried alone below
            logger.warning("scoring a batch of %d pairs failed (%s); scoring each pair alone", len(pairs), type(error).__name__)
    return [_score_alone(score, pair) for pair in pairs]


def _score_alone(score: Callable[[list], Sequence[float]], pair) -> float | PairFailure:
    try:
        return float(score([pair])[0])
    except Exception as error:  # becomes the error of this pair's request only
        if isinstance(error, UnscorableInput):
            logger.warning("a pair could not be scored: %s", error)  # the input's fault: no trace, no text of it
        else:
            logger.exception("a pair could not be scored")
        return PairFailure(error)


def raise_failures(answers: list[Any]) -> list[Any]:
    """The answers unchanged if none failed; else ScoringFailed (500) if any pair failed by the service's fault, or a
    ValidationError (400) naming each pair the model refused (inside BentoML's validation of a request's answer too)."""
    failures = {index: answer for index, answer in enumerate(answers) if isinstance(answer, PairFailure)}
    for index, failure in failures.items():
        if not failure.input_fault:  # a fault of the service outweighs any fault of the input
            raise ScoringFailed(f"pair {index} of the request could not be scored") from failure.error
    if not failures:
        return answers
    problems = [
        InitErrorDetails(
            type=PydanticCustomError("unscorable_input", "pair {index} could not be scored: the model refused it", {"index": at}),
            loc=("pairs", at),
            input=None,
        )
        for at in failures
    ]
    raise ValidationError.from_exception_data("pairs", problems)


def answers_of(model: type) -> Any:
    """A batchable API's return type: a list of `model`, whose PairFailures become the request's error (raise_failures)."""
    return Annotated[list[model], BeforeValidator(raise_failures)]
