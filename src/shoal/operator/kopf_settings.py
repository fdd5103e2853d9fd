"""kopf settings for an operator that watches thousands of objects with event handlers only.

kopf computes a diff "essence" of every event (a deep copy of the body) for change handlers, even when a
resource has none; at 1,000 services and their 5,000 children that copying dominated the operator's CPU.
Our handlers never use diffs (the reconcile recomputes everything), so the essence is built without copying.
"""

from __future__ import annotations

import random
from typing import Any

import kopf

from shoal.operator.config import OperatorConfig

_NOT_ESSENCE = ("apiVersion", "kind", "metadata", "status")


class ShallowDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {key: value for key, value in body.items() if key not in _NOT_ESSENCE}


class ShallowProgressStorage(kopf.SmartProgressStorage):
    def clear(self, *, essence: Any) -> Any:
        return essence  # the essence above never holds kopf's progress fields


def operator_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = ShallowDiffBaseStorage()
    settings.persistence.progress_storage = ShallowProgressStorage()
    settings.peering.name = config.peering_name
    settings.peering.mandatory = False  # peering when its CRD is installed (the chart does), else standalone
    settings.peering.standalone = config.standalone
    settings.peering.clusterwide = config.all_namespaces
    # kopf pauses an operator that sees a live peer of higher priority; equal priorities would both act
    settings.peering.priority = (config.peering_priority if config.peering_priority is not None
                                 else random.randint(1, 1_000_000))
    settings.posting.level = 20  # INFO
    settings.watching.server_timeout = 300  # reconnect watches regularly, as client-go does
    settings.networking.request_timeout = 60
    return settings
