"""Turn a pod's engine container into a local `shoal serve` command, as a kubelet would start the container.

Pure: given the pod spec, the ConfigMaps and Secrets it mounts, and where this replica lives locally (its folder,
address, cores), return the argv, the environment and the files to write. Mounted ConfigMaps and Secrets become
folders under the pod's folder; any argument or variable naming a mount path is pointed at that folder. Flags that
only make sense locally (model folder, device, host, port) override whatever the template says.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_CONTAINER = "engine"
# Flags the local fleet decides, whatever the pod template says: where the model is, CPU, and this replica's address.
LOCAL_FLAGS = ("--model", "--device", "--dtype", "--host", "--port")


@dataclass(frozen=True)
class Placement:
    """Where one replica runs on this machine."""

    pod_dir: Path
    host: str
    port: int
    cores: tuple[int, ...]
    model_dir: Path


@dataclass(frozen=True)
class LocalCommand:
    argv: list[str]
    env: dict[str, str]
    files: dict[Path, bytes] = field(default_factory=dict)
    dirs: tuple[Path, ...] = ()


class PodSpecError(ValueError):
    """The pod template asks for something the local kubelet cannot provide."""


def engine_container(pod_spec: dict) -> dict:
    containers = pod_spec.get("containers") or []
    if not containers:
        raise PodSpecError("pod template has no containers")
    for c in containers:
        if c.get("name") == ENGINE_CONTAINER:
            return c
    return containers[0]


def build_command(
    pod_spec: dict,
    configmaps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
    placement: Placement,
    serve_prefix: tuple[str, ...] = (),
) -> LocalCommand:
    container = engine_container(pod_spec)
    mounts, files, dirs = _materialize_volumes(pod_spec, container, configmaps, secrets, placement.pod_dir)

    args = _serve_args(container)
    args = _strip_flags([_remap(a, mounts) for a in args], LOCAL_FLAGS)
    argv = [*(serve_prefix or (sys.executable, "-m", "shoal", "serve")), *args]
    argv += ["--model", str(placement.model_dir), "--device", "cpu", "--dtype", "float32"]
    argv += ["--host", placement.host, "--port", str(placement.port)]

    env: dict[str, str] = {}
    for item in container.get("env") or []:
        value = _env_value(item, configmaps, secrets)
        if value is not None:
            env[item["name"]] = _remap(value, mounts)
    for key in ("SHOAL_MODEL", "SHOAL_DEVICE", "SHOAL_DTYPE", "SHOAL_HOST", "SHOAL_PORT"):
        env.pop(key, None)
    threads = str(max(1, len(placement.cores)))
    # torch sizes its intra-op pool from these; one pool per pinned core so replicas do not fight.
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "SHOAL_CPU_THREADS": threads,
                "PYTHONUNBUFFERED": "1"})
    return LocalCommand(argv=argv, env=env, files=files, dirs=tuple(dirs))


def _serve_args(container: dict) -> list[str]:
    """The flags after `serve`, wherever the template splits command and args (`shoal` + `serve ...`, or both in one)."""
    full = [str(c) for c in (container.get("command") or []) + (container.get("args") or [])]
    if "serve" in full:
        return full[full.index("serve") + 1 :]
    return [str(a) for a in container.get("args") or []]


def _materialize_volumes(pod_spec, container, configmaps, secrets, pod_dir: Path):
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    files: dict[Path, bytes] = {}
    dirs: list[Path] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodSpecError(f"volumeMount {mount['name']!r} names no volume in the pod template")
        local = pod_dir / "volumes" / mount["name"]
        dirs.append(local)
        data = _volume_data(volume, configmaps, secrets)
        for key, content in data.items():
            files[local / key] = content
        target = local
        if mount.get("subPath"):
            target = local / mount["subPath"]
        mounts[mount["mountPath"].rstrip("/")] = target
    return mounts, files, dirs


def _volume_data(volume: dict, configmaps, secrets) -> dict[str, bytes]:
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        if name not in configmaps:
            if volume["configMap"].get("optional"):
                return {}
            raise PodSpecError(f"ConfigMap {name!r} mounted by volume {volume['name']!r} does not exist yet")
        return {k: str(v).encode() for k, v in configmaps[name].items()}
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        if name not in secrets:
            if volume["secret"].get("optional"):
                return {}
            raise PodSpecError(f"Secret {name!r} mounted by volume {volume['name']!r} does not exist yet")
        return {k: base64.b64decode(v) for k, v in secrets[name].items()}
    return {}  # emptyDir, persistentVolumeClaim (the model comes from the local cache), ...: an empty folder


def _env_value(item: dict, configmaps, secrets) -> str | None:
    if "value" in item:
        return str(item["value"])
    source = item.get("valueFrom") or {}
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        data = secrets.get(ref["name"], {})
        return base64.b64decode(data[ref["key"]]).decode() if ref["key"] in data else None
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return configmaps.get(ref["name"], {}).get(ref["key"])
    return None  # fieldRef and friends have no local meaning the engine needs


def _remap(value: str, mounts: dict[str, Path]) -> str:
    """Point a value that names a path inside a mount at the local folder (also inside `--flag=/path`)."""
    prefix, sep, path = value.partition("=") if value.startswith("--") else ("", "", value)
    for mount_path in sorted(mounts, key=len, reverse=True):
        if path == mount_path or path.startswith(mount_path + "/"):
            return prefix + sep + str(mounts[mount_path]) + path[len(mount_path):]
    return value


def _strip_flags(args: list[str], flags: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        if any(a.startswith(f + "=") for f in flags):
            continue
        out.append(a)
    return out
