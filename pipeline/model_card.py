"""The model card of a registered version (Markdown): what the model is, what it was trained and tested on, with
which params and licences, how well it does and where it errs, what it is for, and how to rebuild it.

The register stage writes it as the model version's description and as an artifact of its run; the package stage
ships it in the BentoML model and the service links it from the demo page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.metrics import SIMILAR_AT
from pipeline.tables import markdown_table


def card_artifact_folder(version: str) -> str:
    """Where a version's card lies among its run's artifacts (one run can register several versions)."""
    return f"model_card/v{version}"


MAX_DESCRIPTION_CHARS = 5000  # the registry's description column (MLflow's SQL schema)
DATASETS = {  # data.source -> (split, data set, licence)
    "mirror": [
        ("train", "KorSTS train (Korean translation of STS-B), kakaobrain/KorNLUDatasets", "CC BY-SA 4.0"),
        ("validation", "KorSTS dev", "CC BY-SA 4.0"),
        ("test", "KLUE-STS v1.1 dev (the split papers report on), klue-benchmark", "CC BY-SA 4.0"),
    ],
    "hub": [
        ("train, validation", "KLUE-STS train (klue/klue, sts), a seeded validation slice held out", "CC BY-SA 4.0"),
        ("test", "KLUE-STS validation", "CC BY-SA 4.0"),
    ],
}
KORSTS_ADDED = ("train", "KorSTS train, added to KLUE-STS train (data.hub_add_korsts)", "CC BY-SA 4.0")
NLI_ADDED = ("train (triplets)", "KorNLI and KLUE-NLI dev triplets (train.nli_triplets)", "CC BY-SA 4.0")


@dataclass(frozen=True)
class CardFacts:
    """What a card says, gathered by the register stage."""

    model_name: str
    version: str
    base_model: str
    base_licence: str
    head: str
    data_source: str
    korsts_added: bool
    nli_triplets: int | None
    train_params: dict[str, Any]  # the chosen trial's hyperparameters
    validation: dict[str, Any]  # the shipped model's validation figures (the refit's, else the chosen trial's)
    test: dict[str, Any]  # evaluate's metrics.json
    highlights: list[str]
    commit: str
    dirty: bool
    lineage: dict[str, str] = field(default_factory=dict)  # data.<split>.md5
    trained_on: str = ""  # reports/study.json's shipped description: the refit (its budget) or the chosen trial


def base_licence(folder: Path, record: dict[str, Any]) -> str:
    """The base model's licence: its source record's, else the `license:` of its model card, else unknown."""
    if record.get("licence"):
        return str(record["licence"])
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            for line in text.split("---", 2)[1].splitlines():
                if line.strip().lower().startswith("license:"):
                    return line.split(":", 1)[1].strip()
    return "unknown: check the base model's own card"


def _metrics_rows(test: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"pairs on": "all", **test["test"]}]
    return rows + [{"pairs on": source, **values} for source, values in test.get("by_source", {}).items()]


def model_card(facts: CardFacts) -> str:
    """The card as Markdown."""
    datasets = list(DATASETS[facts.data_source])
    if facts.data_source == "hub" and facts.korsts_added:
        datasets.append(KORSTS_ADDED)
    if facts.nli_triplets != 0:
        datasets.append(NLI_ADDED)
    threshold = facts.test["threshold"]  # evaluate.threshold, which the model also carries (similarity.json)
    hyper = facts.train_params.items()
    state = " (the work tree had uncommitted changes: this commit alone does not rebuild it)" if facts.dirty else ""
    lines = [
        f"# Model card: {facts.model_name} v{facts.version}",
        "",
        f"Korean sentence similarity: two sentences in, a score from 0 (unrelated) to 5 (same meaning) out; "
        f"'similar' when the score is at least {threshold}.",
        "",
        "## Model",
        f"- base model: `{facts.base_model}` (licence: {facts.base_licence})",
        f"- head: `{facts.head}`; hyperparameters of the chosen trial: "
        + ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}" for key, value in hyper),
        f"- trained: {facts.trained_on}",
        "",
        "## Data",
        markdown_table([{"split": s, "data set": d, "licence": lic} for s, d, lic in datasets], ["split", "data set", "licence"]),
        "Data MD5s as DVC records them: " + ", ".join(f"{key.split('.')[1]} `{value}`" for key, value in facts.lineage.items()),
        "",
        "## Quality",
        f"Test split (F1 of the 'similar' verdict at {threshold}, correlations with the gold scores, MSE):",
        "",
        markdown_table(_metrics_rows(facts.test), ["pairs on", "f1", "pearson", "spearman", "mse", "pairs"]),
        "Validation (the shipped model): " + ", ".join(f"{key} {value:.4f}" for key, value in facts.validation.items()),
        "",
        "Error analysis (reports/analysis/error_analysis.md of the run that built it):",
        *(f"- {note}" for note in facts.highlights),
        "",
        "## Intended use and limits",
        "- For ranking and filtering Korean sentence pairs by meaning (duplicates, paraphrases, retrieval checks).",
        "- Tested on KLUE-STS (Airbnb reviews, policy news, paraKQC questions); other domains, long documents, "
        "code-mixed or non-Korean text are untested. Per-source figures above differ widely: check yours.",
        f"- The score is a regression output, not a probability; the verdict's threshold ({threshold}) is the pipeline's "
        f"`evaluate.threshold` (KLUE's own label: {SIMILAR_AT}).",
        "- Not for decisions about people without a human review.",
        "",
        "## Reproduce",
        f"`git checkout {facts.commit} && dvc pull && dvc repro`{state}",
        "",
    ]
    return "\n".join(lines)


def registry_description(card: str) -> str:
    """The card as a model version description: whole when it fits the registry's column, else cut with a pointer."""
    if len(card) <= MAX_DESCRIPTION_CHARS:
        return card
    note = "\n\n(cut to fit the registry; the whole card is the artifact model_card.md of the version's run)"
    return card[: MAX_DESCRIPTION_CHARS - len(note)] + note
