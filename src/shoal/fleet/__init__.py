"""The local fleet: a Kubernetes API emulator, a kubelet that runs pods as local processes, Prometheus, the operator.

Used by `shoal demo`, `shoal fleet up` and the e2e tests. Nothing else imports this package.
"""
