"""Hit/miss counters of the caches, one JSON line per run appended to stats.jsonl."""
from __future__ import annotations

import json
from pathlib import Path


def record(root, **counts) -> None:
    line = json.dumps(counts) + "\n"
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / "stats.jsonl", "a") as f:  # O_APPEND: small lines never interleave
        f.write(line)


def totals(root) -> dict:
    path = Path(root) / "stats.jsonl"
    out: dict = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                for k, v in json.loads(line).items():
                    if isinstance(v, (int, float)):
                        out[k] = out.get(k, 0) + v
            except ValueError:
                continue
    return out
