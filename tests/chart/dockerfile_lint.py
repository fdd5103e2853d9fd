"""A small Dockerfile reader for the image checks (the hadolint rules that matter here, without a Docker engine)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str  # upper case: FROM, RUN, USER, ...
    args: str


def parse(path: Path) -> list[Instruction]:
    """Instructions in order, with backslash continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = ""
    return out


def problems(path: Path) -> list[str]:
    """Every rule broken by the Dockerfile at `path`, each message naming the line."""
    found = []
    instructions = parse(path)
    for ins in instructions:
        where = f"{path.name}:{ins.line}"
        if ins.keyword == "FROM":
            image = ins.args.split()[0]
            if "@sha256:" not in image:
                name, _, tag = image.rpartition(":")
                if not name or "/" in tag:
                    found.append(f"{where}: FROM {image} has no tag: pin one")
                elif tag == "latest" or not re.search(r"\d", tag):
                    found.append(f"{where}: FROM {image} uses a moving tag: pin a version")
        if ins.keyword == "RUN":
            found += _run_problems(where, ins.args)
        if ins.keyword in ("ENTRYPOINT", "CMD"):
            try:
                json.loads(ins.args)
            except ValueError:
                found.append(f"{where}: {ins.keyword} is in shell form: use the JSON (exec) form so signals reach it")
        if ins.keyword == "ADD":
            found.append(f"{where}: ADD fetches or unpacks implicitly: use COPY")
    users = [i for i in instructions if i.keyword == "USER"]
    if not users:
        found.append(f"{path.name}: no USER: the image would run as root")
    else:
        uid = users[-1].args.split(":")[0]
        if not uid.isdigit():
            found.append(f"{path.name}:{users[-1].line}: USER {users[-1].args} is not numeric: "
                         "Kubernetes can only check runAsNonRoot against a numeric uid")
        elif int(uid) == 0:
            found.append(f"{path.name}:{users[-1].line}: the last USER is root")
    return found


def _run_problems(where: str, cmd: str) -> list[str]:
    found = []
    if "apt-get install" in cmd:
        if "--no-install-recommends" not in cmd:
            found.append(f"{where}: apt-get install without --no-install-recommends")
        if "rm -rf /var/lib/apt/lists" not in cmd:
            found.append(f"{where}: apt lists not removed in the same RUN (they stay in the layer)")
        if " -y" not in cmd:
            found.append(f"{where}: apt-get install without -y")
    if re.search(r"\bpip3? install\b", cmd) and "--no-cache-dir" not in cmd:
        found.append(f"{where}: pip install without --no-cache-dir")
    if re.search(r"\bsudo\b", cmd):
        found.append(f"{where}: sudo in a RUN")
    if re.search(r"\b(curl|wget)\b", cmd):
        found.append(f"{where}: downloads outside a package manager are not pinned")
    return found


def copy_sources(path: Path) -> list[str]:
    """Source paths of every COPY that reads from the build context (not --from another stage)."""
    sources = []
    for ins in parse(path):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            parts = [p for p in ins.args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def base_images(path: Path) -> list[str]:
    return [i.args.split()[0] for i in parse(path) if i.keyword == "FROM"]
