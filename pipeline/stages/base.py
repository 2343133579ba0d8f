"""Stage base: materialize the base encoder named by model.name into models/base, the one pinned copy.

Every later stage reads models/base, so `dvc pull` gives a GPU runner the exact weights this machine
trained from, whatever the Hub or an installed package holds later. models/base/source.json records
where they came from (for a hub id, the resolved commit).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.errors import run_stage
from pipeline.paths import BASE_DIR, SOURCE_RECORD
from pipeline.sources import fetch_base_model
from pipeline.swap import replace_folder
from pipeline.tables import write_json


def materialize_base_model(name: str, revision: str | None, target: Path) -> dict:
    """Fetch model.name into target atomically (a failed fetch leaves the previous folder as it was)."""
    record: dict = {}

    def fill(staging: Path) -> None:
        staging.mkdir(parents=True)
        record.update(fetch_base_model(name, revision, staging))
        write_json(staging / SOURCE_RECORD.name, record)

    replace_folder(target, fill)
    return record


def main() -> None:
    params = load_params().model
    record = materialize_base_model(params.name, params.revision, BASE_DIR)
    size = sum(path.stat().st_size for path in BASE_DIR.rglob("*") if path.is_file())
    print(f"base: {params.name} ({record['kind']}) -> {BASE_DIR} ({size / 1e6:.0f} MB)")


if __name__ == "__main__":
    run_stage(main)
