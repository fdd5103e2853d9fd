"""API errors rendered as Kubernetes `Status` objects."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API server answers with: HTTP code, Kubernetes reason, human message."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(kind_plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                    {"name": name, "group": group, "kind": kind_plural})


def already_exists(kind_plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists',
                    {"name": name, "group": group, "kind": kind_plural})


def conflict(kind_plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    {"name": name, "group": group, "kind": kind_plural})


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> ApiError:
    summary = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
    return ApiError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {summary}' if group
                    else f'{kind} "{name}" is invalid: {summary}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})
