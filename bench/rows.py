"""One line of the benchmark table, the percentile its latency rows use, and the JSON it is
written as (so runs can be compared)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchRow:
    name: str
    value: float
    unit: str
    note: str = ""
    # What the figure should reach, as text beside it ("≥ 7,000", "≤ 5"); "" when none.
    target: str = ""


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def meets(row: BenchRow) -> str:
    """ "yes", "NO", or "" for a row without a target."""
    if not row.target:
        return ""
    sign, _, figure = row.target.partition(" ")
    limit = float(figure.replace(",", ""))
    met = row.value >= limit if sign == "≥" else row.value <= limit
    return "yes" if met else "NO"


def write_json(rows: list[BenchRow], directory: Path) -> Path:
    """The table as JSON: `last.json`, and a copy named for the time of the run."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "rows": [{**asdict(row), "met": meets(row)} for row in rows],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False)
    (directory / f"run-{document['finished_at']}.json").write_text(text)
    last = directory / "last.json"
    last.write_text(text)
    return last
