"""The Shoal operator: InferenceService -> engine Deployment, Service, runtime ConfigMap, PDB, ServiceMonitor.

kopf handlers (handlers.py) only enqueue keys; one idempotent reconcile per InferenceService (reconcile.py)
computes the desired children with pure builders (builders.py), applies them (kube.py) and writes status
(status.py). It reaches engines only over HTTP and Prometheus.
"""
