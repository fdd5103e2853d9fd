{{/* The operator's ClusterRole rules, equal to deploy/rbac.yaml's (tests/chart/test_security.py checks it). */}}
{{- define "shoal.rbacRules" -}}
# The API it serves: read and watch InferenceServices; write only their status (never the spec).
- apiGroups: ["shoal.dev"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["shoal.dev"]
  resources: ["inferenceservices/status"]
  verbs: ["get", "patch", "update"]
# Children: created and kept as specified; deletion is left to the garbage collector (ownerReferences).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The control loop pushes runtime batch limits to each ready engine pod over HTTP: it needs their addresses.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Kubernetes Events about what it did.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# kopf: resource discovery follows CRDs; namespace watching for --all-namespaces and namespace patterns.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# kopf peering (leader election between operator replicas): the peering CRDs ship in crds/.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings", "kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
