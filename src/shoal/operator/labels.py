"""The one place that knows Shoal's API names, labels and child-object names (DESIGN.md)."""

from __future__ import annotations

GROUP = "shoal.dev"
VERSION = "v1alpha1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
API_VERSION = f"{GROUP}/{VERSION}"

NAME = "app.kubernetes.io/name"
MANAGED_BY = "app.kubernetes.io/managed-by"
SERVICE = "shoal.dev/service"
ENGINE = "shoal-engine"
MANAGER = "shoal"

HTTP_PORT = 8000
RUNTIME_DIR = "/etc/shoal/runtime"
ADMIN_TOKEN_DIR = "/var/run/shoal/admin"
ADMIN_TOKEN_KEY = "token"
RUNTIME_MAX_NUM_SEQS = "maxNumSeqs"
RUNTIME_MAX_NUM_BATCHED_TOKENS = "maxNumBatchedTokens"


def child_labels(service: str) -> dict[str, str]:
    """Labels every child object and engine pod carries."""
    return {NAME: ENGINE, MANAGED_BY: MANAGER, SERVICE: service}


def selector_labels(service: str) -> dict[str, str]:
    """The pod selector (a Deployment's selector is immutable, so it never grows)."""
    return {SERVICE: service}


def selector_string(service: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(service).items())


def runtime_configmap_name(service: str) -> str:
    return f"{service}-runtime"


def admin_token_secret_name(service: str) -> str:
    return f"{service}-admin-token"


def endpoint(service: str, namespace: str) -> str:
    return f"http://{service}.{namespace}.svc:{HTTP_PORT}/v1"
