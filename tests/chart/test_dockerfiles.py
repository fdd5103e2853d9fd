"""The images, checked without a Docker engine: pinned bases, non-root numeric USER, lint rules, exact pins,
and that each image's package set is enough for the Shoal code it runs."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO
from .dockerfile_lint import base_images, copy_sources, problems
from .import_guard import requirement_names, run_guarded

DOCKER = REPO / "docker"
ENGINE = DOCKER / "engine.Dockerfile"
OPERATOR = DOCKER / "operator.Dockerfile"


@pytest.mark.parametrize("dockerfile", [ENGINE, OPERATOR], ids=lambda p: p.name)
def test_dockerfile_follows_the_rules(dockerfile):
    assert problems(dockerfile) == []


def test_the_linter_catches_what_it_claims(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nFROM ubuntu\nRUN apt-get install gcc\nRUN pip install torch\n"
                   "ADD x /x\nCMD shoal serve\n")
    found = "\n".join(problems(bad))
    for expected in ("moving tag", "has no tag", "--no-install-recommends", "apt lists", "--no-cache-dir",
                     "use COPY", "shell form", "no USER"):
        assert expected in found
    bad.write_text("FROM python:3.11.11-slim\nUSER shoal\n")
    assert "not numeric" in "\n".join(problems(bad))
    bad.write_text("FROM python:3.11.11-slim\nUSER 1000\nUSER 0:0\n")
    assert "root" in "\n".join(problems(bad))


def test_bases_are_cuda_runtime_and_slim_python():
    (engine_base,) = base_images(ENGINE)
    (operator_base,) = base_images(OPERATOR)
    assert engine_base.startswith("nvidia/cuda:") and "-runtime-" in engine_base
    assert operator_base.startswith("python:") and "-slim" in operator_base
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    minimum = project["requires-python"].removeprefix(">=")
    version = operator_base.split(":")[1].split("-")[0]
    assert tuple(map(int, version.split(".")[:2])) >= tuple(map(int, minimum.split(".")[:2]))


@pytest.mark.parametrize("dockerfile", [ENGINE, OPERATOR], ids=lambda p: p.name)
def test_copied_paths_exist(dockerfile):
    for source in copy_sources(dockerfile):
        assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"


@pytest.mark.parametrize("name", ["engine", "operator"])
def test_requirements_are_exact_and_agree_with_pyproject(name):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(r).name): Requirement(r) for r in
                project["dependencies"] + project["optional-dependencies"]["gpu"]}
    lines = [l for l in (DOCKER / f"{name}-requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines
    for line in lines:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and "*" not in spec.version, f"{line} is not an exact pin"
        if canonicalize_name(req.name) in declared:
            assert declared[canonicalize_name(req.name)].specifier.contains(spec.version), \
                f"{line} breaks pyproject.toml's {declared[canonicalize_name(req.name)]}"


def test_operator_image_carries_no_engine_stack():
    names = requirement_names(DOCKER / "operator-requirements.txt")
    assert not names & {"torch", "triton", "tokenizers", "safetensors", "transformers"}


def test_engine_image_packages_suffice_for_the_engine():
    code = ("import importlib, pkgutil, shoal.engine, shoal.engine.server\n"
            "for pkg in (shoal.engine, shoal.engine.server):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "from shoal.cli import main\n"
            "raise SystemExit(main(['serve', '--help']))\n")
    result = run_guarded(code, DOCKER / "engine-requirements.txt", REPO)
    assert result.returncode == 0, result.stderr
    assert "--model" in result.stdout


def test_operator_image_packages_suffice_for_the_operator():
    code = ("import importlib, pkgutil, shoal.operator\n"
            "for m in pkgutil.iter_modules(shoal.operator.__path__, 'shoal.operator.'):\n"
            "    importlib.import_module(m.name)\n"
            "from shoal.cli import main\n"
            "raise SystemExit(main(['operator', '--help']))\n")
    result = run_guarded(code, DOCKER / "operator-requirements.txt", REPO)
    assert result.returncode == 0, result.stderr
    assert "--prometheus-url" in result.stdout


def test_the_guard_refuses_what_an_image_lacks():
    result = run_guarded("import torch", DOCKER / "operator-requirements.txt", REPO)
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr
