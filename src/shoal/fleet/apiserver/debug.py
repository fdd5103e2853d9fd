"""`/debug/faults` and `/debug/tripwire`: GET reports, PUT reconfigures (campaigns and tests in other processes)."""

from __future__ import annotations

from typing import Any

import aiohttp.web

from shoal.fleet.apiserver import errors
from shoal.fleet.apiserver.faults import FaultConfig, FaultInjector
from shoal.fleet.apiserver.tripwire import Tripwire


async def answer(request: aiohttp.web.BaseRequest, faults: FaultInjector,
                 tripwire: Tripwire) -> tuple[dict[str, Any], int]:
    """(payload, HTTP status) for one debug call; a bad body is a 400 that names the field."""
    target = request.path.rstrip("/")
    try:
        if target == "/debug/faults":
            if request.method == "PUT":
                faults.configure(FaultConfig(**await request.json()))
            return faults.report(), 200
        if target == "/debug/tripwire":
            if request.method == "PUT":
                body = await request.json()
                tripwire.arm(body.get("token", ""), body.get("pid"), body.get("after"))
            return tripwire.report(), 200
    except (TypeError, ValueError) as exc:
        return errors.ApiError(400, "BadRequest", str(exc)).status(), 400
    return errors.ApiError(404, "NotFound", f"no debug endpoint {request.path}").status(), 404
