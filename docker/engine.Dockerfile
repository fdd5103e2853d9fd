# syntax=docker/dockerfile:1.7
# Shoal engine image: `shoal serve` (OpenAI-compatible server, paged KV cache, Triton kernels) on an NVIDIA GPU,
# or on CPU for InferenceServices with resources.gpus: 0.
#
# Build from the repository root (docker/engine.Dockerfile.dockerignore keeps .venv and caches out of the context):
#   docker build -f docker/engine.Dockerfile -t shoal/engine:0.1.0 .
# The operator starts it with `serve --model ... --port 8000 ...`; run it by hand with:
#   docker run --gpus all -p 8000:8000 -v /models/smollm2:/models/smollm2:ro shoal/engine:0.1.0 \
#       serve --model /models/smollm2 --device cuda --dtype bfloat16

# CUDA runtime base (cuBLAS and friends; the driver comes from the node). Pinned: never `latest`.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ARG DEBIAN_FRONTEND=noninteractive
# Triton compiles a small launcher with the host C compiler at run time, so gcc and the Python headers stay.
# Their versions are those of the pinned base's Ubuntu release (24.04: Python 3.12).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/shoal
ENV PATH=/opt/shoal/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY docker/engine-requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
COPY pyproject.toml README.md /tmp/shoal/
COPY src /tmp/shoal/src
# --no-deps: the exact versions above are the whole environment.
RUN pip install --no-cache-dir --no-deps /tmp/shoal && rm -rf /tmp/shoal /tmp/requirements.txt

# A numeric non-root user, so Kubernetes can enforce runAsNonRoot without a name lookup.
RUN groupadd --system --gid 65532 shoal \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shoal
# The pod's root filesystem is read-only: every cache goes to /tmp (an emptyDir in the pod).
ENV HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    TRITON_CACHE_DIR=/tmp/triton
USER 65532:65532
WORKDIR /tmp

EXPOSE 8000
ENTRYPOINT ["shoal"]
CMD ["serve", "--help"]
