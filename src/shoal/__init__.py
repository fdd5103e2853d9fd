"""Shoal: LLM inference fleets on Kubernetes, kept inside their latency SLOs."""

__version__ = "0.1.0"
