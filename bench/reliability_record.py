"""One place where every reliability campaign (issue 9) records what it injected, survived and lost.

Each campaign script calls `record(section, rows)`; sections from different scripts merge into
`bench/results/reliability.json` under a file lock, so campaigns can run one after another or at once.
`python bench/reliability_record.py` prints the Markdown table that docs/reliability.md carries.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "reliability.json"
ROW_FIELDS = ("scenario", "faults_injected", "survived", "data_lost")


def validate_row(row: dict) -> dict:
    """A row names its scenario and counts faults injected, faults survived and items lost (must be 0)."""
    missing = [f for f in ROW_FIELDS if f not in row]
    if missing:
        raise ValueError(f"reliability row is missing {missing}; every row needs {list(ROW_FIELDS)}")
    for f in ROW_FIELDS[1:]:
        if not isinstance(row[f], int) or row[f] < 0:
            raise ValueError(f"reliability row field {f!r} must be a non-negative int, got {row[f]!r}")
    return row


def merge(document: dict, section: str, rows: list[dict], command: str) -> dict:
    """Replace one section of the results document (pure: returns a new dict)."""
    out = dict(document)
    sections = dict(out.get("sections", {}))
    sections[section] = {
        "date": _dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "command": command,
        "rows": [validate_row(dict(r)) for r in rows],
    }
    out["sections"] = sections
    return out


def record(section: str, rows: list[dict], command: str | None = None, path: Path = RESULTS) -> Path:
    """Write `rows` as `section` of the shared reliability.json (read-modify-write under an exclusive lock)."""
    command = command or " ".join(["python"] + sys.argv)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(merge(document, section, rows, command), indent=2) + "\n")
    return path


def markdown_table(document: dict) -> str:
    lines = ["| Section | Scenario | Faults injected | Survived | Data lost |", "|---|---|---:|---:|---:|"]
    for name, section in sorted(document.get("sections", {}).items()):
        for r in section["rows"]:
            lines.append(f"| {name} | {r['scenario']} | {r['faults_injected']} | {r['survived']} | {r['data_lost']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(json.loads(RESULTS.read_text())))
