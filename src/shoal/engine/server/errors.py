"""OpenAI-style API errors: one exception type, one JSON shape.

Status codes: 400 the request is malformed (not JSON, wrong type, unknown or unsupported field),
404 unknown model, 422 well-formed but unprocessable (value out of range, prompt longer than the context),
401 admin token missing or wrong, 429 waiting queue full, 503 draining or not ready.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class APIError(Exception):
    status: int
    message: str
    param: str | None = None
    type: str = "invalid_request_error"
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param)


def unprocessable(message: str, param: str | None = None) -> APIError:
    return APIError(422, message, param)


def model_not_found(requested: str, served: str) -> APIError:
    return APIError(
        404,
        f"The model `{requested}` does not exist; this server serves `{served}`.",
        "model",
        code="model_not_found",
    )


def unauthorized(message: str) -> APIError:
    return APIError(401, message, type="authentication_error", code="invalid_api_key")


def queue_full(waiting: int, retry_after_s: int) -> APIError:
    return APIError(
        429,
        f"Server is at capacity: {waiting} requests waiting; retry after {retry_after_s} s.",
        type="rate_limit_exceeded",
        code="queue_full",
        headers={"Retry-After": str(retry_after_s)},
    )


def unavailable(message: str) -> APIError:
    return APIError(503, message, type="service_unavailable", code="unavailable")
