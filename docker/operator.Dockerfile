# syntax=docker/dockerfile:1.7
# Shoal operator image: `shoal operator` (kopf). No torch, no CUDA: the operator reaches engines over HTTP only.
#
# Build from the repository root (docker/operator.Dockerfile.dockerignore keeps .venv and caches out of the context):
#   docker build -f docker/operator.Dockerfile -t shoal/operator:0.1.0 .
# The Helm chart runs it as `shoal operator --all-namespaces --prometheus-url ... --engine-image ...`.

# Slim Debian Python, pinned to the minor release the project is tested on. Never `latest`.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY docker/operator-requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
COPY pyproject.toml README.md /tmp/shoal/
COPY src /tmp/shoal/src
# --no-deps: the exact versions above are the whole environment (the engine's torch stack stays out).
RUN pip install --no-cache-dir --no-deps /tmp/shoal && rm -rf /tmp/shoal /tmp/requirements.txt

# A numeric non-root user, so Kubernetes can enforce runAsNonRoot without a name lookup.
RUN groupadd --system --gid 65532 shoal \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shoal
# The pod's root filesystem is read-only: HOME and caches live in /tmp (an emptyDir in the pod).
ENV HOME=/tmp
USER 65532:65532
WORKDIR /tmp

EXPOSE 8080 9090
ENTRYPOINT ["shoal"]
CMD ["operator", "--help"]
