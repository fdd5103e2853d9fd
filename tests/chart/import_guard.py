"""Run Python code that may import only the standard library, Shoal, and the distributions of one image."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Installed by the Dockerfile itself (pip and setuptools come with the venv / the base image).
_ALWAYS = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "shoal"}

_GUARD = """
import importlib.machinery, sys
allowed = set(sys.argv[1].split(","))
class ImageFinder(importlib.machinery.PathFinder):
    # The path finder, blind to top-level modules the image does not install (find_spec -> None, import fails).
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        top = name.partition(".")[0]
        if path is None and top not in allowed and top not in sys.stdlib_module_names:
            return None
        return super().find_spec(name, path, target)
sys.meta_path[:] = [ImageFinder if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def requirement_names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(Requirement(line).name))
    return names


def importable_names(requirements: Path) -> set[str]:
    """Top-level module names that the distributions listed in `requirements` provide (as installed here)."""
    wanted = requirement_names(requirements)
    tops = set(_ALWAYS)
    for top, dists in importlib.metadata.packages_distributions().items():
        if any(canonicalize_name(d) in wanted for d in dists):
            tops.add(top)
    return tops


def run_guarded(code: str, requirements: Path, cwd: Path) -> subprocess.CompletedProcess:
    allowed = ",".join(sorted(importable_names(requirements)))
    return subprocess.run([sys.executable, "-c", _GUARD + code, allowed], capture_output=True, text=True,
                          cwd=cwd, timeout=120)
