"""`shoal operator`: run the InferenceService operator."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "operator", help="run the InferenceService operator (kopf)",
        description="Reconcile InferenceServices into engine Deployments, Services, runtime ConfigMaps, PDBs "
                    "and ServiceMonitors, and keep them inside their SLO.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[],
                       help="watch this namespace (repeatable); default: $POD_NAMESPACE or 'default'")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--prometheus-url", default=os.environ.get("SHOAL_PROMETHEUS_URL"),
                        help="Prometheus base URL the control loop queries (e.g. http://prometheus:9090)")
    parser.add_argument("--engine-image", default=os.environ.get("SHOAL_ENGINE_IMAGE"),
                        help="default engine image for InferenceServices that leave spec.image empty")
    parser.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0: off)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="serve /metrics here (0: off)")
    parser.add_argument("--peering", default="shoal", help="kopf peering name (leader election between replicas)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default random): among replicas only the highest acts")
    parser.add_argument("--standalone", action="store_true", help="no peering: for a single operator replica")
    parser.add_argument("--workers", type=int, default=1,
                        help="concurrent reconciles (raise it when API round trips are slow, e.g. a remote cluster)")
    parser.add_argument("--control-period", type=float, default=None, metavar="SECONDS",
                        help="seconds between the autoscaler's decisions for each InferenceService "
                             "(default: $SHOAL_AUTOSCALER_PERIOD_SECONDS, else 15)")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(func=run)


def control_period(flag: float | None) -> float:
    """The flag, else the environment (the local fleet and e2e set it for their operator processes), else 15 s."""
    from shoal.operator.config import DEFAULT_PERIOD_S, PERIOD_ENV

    if flag is not None:
        return flag
    raw = os.environ.get(PERIOD_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_PERIOD_S
    except ValueError:
        raise ValueError(f"{PERIOD_ENV}={raw!r} is not a number of seconds: fix it or pass --control-period") from None


def config_from_args(args: argparse.Namespace):
    from shoal.operator.config import DEFAULT_ENGINE_IMAGE, OperatorConfig

    namespaces = tuple(args.namespace) or (() if args.all_namespaces else (os.environ.get("POD_NAMESPACE", "default"),))
    return OperatorConfig(
        engine_image=args.engine_image or DEFAULT_ENGINE_IMAGE,
        namespaces=namespaces,
        all_namespaces=args.all_namespaces,
        prometheus_url=args.prometheus_url,
        liveness_port=args.liveness_port or None,
        metrics_port=args.metrics_port or None,
        peering_name=args.peering,
        peering_priority=args.priority,
        standalone=args.standalone,
        workers=args.workers,
        control_period_s=control_period(args.control_period),
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from shoal.operator.main import configure_logging, run_operator

    config = config_from_args(args)
    configure_logging(args.verbose)
    asyncio.run(run_operator(config))
    return 0
