"""Thin kopf handlers: they only feed events to the Controller, which runs the one reconcile per service."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from shoal.operator import kube, labels
from shoal.operator.controller import CHILD_KINDS, Controller
from shoal.operator.metrics import OperatorMetrics

CHILD_FILTER = {labels.MANAGED_BY: labels.MANAGER}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Service account in a pod, else the kubeconfig (read at call time, never via the `kubernetes` package)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    config = memo.config
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: not in a pod and no kubeconfig found")
    memo.metrics = memo.get("metrics") or OperatorMetrics()
    memo.client = kube.KubeClient(info, connections=max(8, config.workers * 2))
    memo.controller = Controller(config, memo.client, memo.metrics)
    await memo.controller.start()
    logger.info("shoal operator started: %d workers, ServiceMonitors %s", config.workers,
                "on" if memo.controller.monitoring else "off (monitoring.coreos.com not served)")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("controller") is not None:
        await memo.controller.stop()
    if memo.get("client") is not None:
        await memo.client.close()


@kopf.on.event(group=labels.GROUP, version=labels.VERSION, plural=labels.PLURAL)
async def inferenceservice_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.controller.observe_service(event.get("type"), event["object"])


def _child_handler(kind: kube.Kind) -> None:
    group, _, version = kind.api_version.rpartition("/")

    @kopf.on.event(group=group, version=version, plural=kind.plural, labels=CHILD_FILTER, id=f"child-{kind.plural}")
    async def child_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
        if memo.get("controller") is not None:
            memo.controller.observe_child(kind, event.get("type"), event["object"])


for _kind in CHILD_KINDS:
    _child_handler(_kind)
