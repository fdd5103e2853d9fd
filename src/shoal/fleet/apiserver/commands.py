"""`shoal apiserver`: run the Kubernetes API emulator standalone and print a kubeconfig for it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apiserver", help="run the Kubernetes API emulator (for kubectl, kopf, the local fleet)",
        description="Serve an in-memory Kubernetes API on HOST:PORT and print a kubeconfig that points at it.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="also write the kubeconfig to this file (written once the server listens)")
    parser.add_argument("--crd", "--manifest", type=Path, action="append", default=[], dest="manifests",
                        help="a YAML file of objects (CRDs first) to create at start (repeatable)")
    parser.add_argument("--faults", default="", metavar="SPEC",
                        help="fail a share of API calls, seeded: 'rate=0.1,seed=7' (split over 409, 429, 500, "
                             "timeout; watches drop at the rate) or per kind, e.g. 'conflict=0.05,watch_drop=0.1,"
                             "hang_s=0.5,user_agents=kopf|shoal-operator'; counts at GET /debug/faults")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import sys

    import yaml

    from shoal.fleet.apiserver import FaultConfig, kubeconfig_text, serve

    faults = FaultConfig.parse(args.faults) if args.faults else None
    async with serve(args.host, args.port, faults=faults) as running:
        for path in args.manifests:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    running.api.api.create_manifest(doc)
        if args.kubeconfig is not None:  # written last and atomically: its presence means "ready"
            args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            partial = args.kubeconfig.with_suffix(".partial")
            partial.write_text(kubeconfig_text(running.url))
            partial.replace(args.kubeconfig)
        sys.stdout.write(kubeconfig_text(running.url))
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0
