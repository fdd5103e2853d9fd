{{/* The operator's ClusterRole rules; tests/chart/test_rbac.py checks they equal deploy/rbac.yaml's. */}}
{{- define "shoal.rbacRules" -}}
# The InferenceService API: watch it, keep kopf's finalizer/annotations on it, write its status.
- apiGroups: ["shoal.dev"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["shoal.dev"]
  resources: ["inferenceservices/status"]
  verbs: ["get", "patch", "update"]
# Children of each InferenceService.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Engine pods: find the ready ones to push runtime batch limits to.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Kubernetes Events for notable actions.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# kopf: discover CRDs and namespaces it serves.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
