"""The `shoal` command line.

Each subsystem owns its subcommands: the module named below exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable
taking the parsed arguments and returning an exit code. Those modules keep
heavy imports (torch, kopf) inside the command functions so `shoal --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shoal import __version__

SUBCOMMAND_MODULES = (
    "shoal.engine.commands",  # model prepare, generate
    "shoal.engine.server.commands",  # serve
    "shoal.operator.commands",  # operator
    "shoal.fleet.apiserver.commands",  # apiserver (the Kubernetes API emulator)
    "shoal.sim.commands",  # sim
    "shoal.fleet.commands",  # demo, fleet up
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="Run LLM inference fleets on Kubernetes inside their latency SLOs.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    unavailable = []
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # That subsystem is not part of this build, or needs a package this install lacks (the slim images
            # in docker/ carry only their own command's dependencies).
            if exc.name is not None and (name.startswith(exc.name) or not exc.name.startswith("shoal")):
                unavailable.append(f"{name} (needs {exc.name})")
                continue
            raise
        module.register(subparsers)
    if unavailable:
        parser.epilog = "Left out of this install: " + ", ".join(unavailable) + "."
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
