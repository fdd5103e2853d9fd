"""Pod template -> local `shoal serve` command: mounts become folders, local flags win."""

import base64
import sys
from pathlib import Path

import pytest

from shoal.fleet.local_pod import Placement, PodSpecError, build_command

SPEC = {
    "containers": [
        {
            "name": "engine",
            "image": "shoal:dev",
            "command": ["shoal", "serve"],
            "args": ["--model", "/models/smollm2", "--port", "8000", "--max-num-seqs", "32",
                     "--runtime-config-dir=/etc/shoal/runtime", "--admin-token-file", "/var/run/shoal/admin/token"],
            "env": [
                {"name": "SHOAL_DRAIN_TIMEOUT", "value": "20"},
                {"name": "SHOAL_PORT", "value": "8000"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "chat-admin-token", "key": "token"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "volumeMounts": [
                {"name": "runtime", "mountPath": "/etc/shoal/runtime"},
                {"name": "admin", "mountPath": "/var/run/shoal/admin", "readOnly": True},
                {"name": "model", "mountPath": "/models"},
            ],
        }
    ],
    "volumes": [
        {"name": "runtime", "configMap": {"name": "chat-runtime"}},
        {"name": "admin", "secret": {"secretName": "chat-admin-token"}},
        {"name": "model", "persistentVolumeClaim": {"claimName": "models"}},
    ],
}
CONFIGMAPS = {"chat-runtime": {"maxNumSeqs": "12", "maxNumBatchedTokens": "512"}}
SECRETS = {"chat-admin-token": {"token": base64.b64encode(b"s3cret").decode()}}


def placement(tmp_path):
    return Placement(pod_dir=tmp_path / "pod", host="127.0.0.1", port=41234, cores=(1,), model_dir=tmp_path / "model")


def test_mounts_become_local_files_and_paths_are_rewritten(tmp_path):
    cmd = build_command(SPEC, CONFIGMAPS, SECRETS, placement(tmp_path))
    vol = tmp_path / "pod" / "volumes"
    assert cmd.files[vol / "runtime" / "maxNumSeqs"] == b"12"
    assert cmd.files[vol / "admin" / "token"] == b"s3cret"
    assert f"--runtime-config-dir={vol / 'runtime'}" in cmd.argv
    i = cmd.argv.index("--admin-token-file")
    assert cmd.argv[i + 1] == str(vol / "admin" / "token")
    assert vol / "model" in cmd.dirs


def test_local_flags_override_the_template(tmp_path):
    cmd = build_command(SPEC, CONFIGMAPS, SECRETS, placement(tmp_path))
    assert cmd.argv[:4] == [sys.executable, "-m", "shoal", "serve"]
    assert cmd.argv.count("--port") == 1 and cmd.argv[cmd.argv.index("--port") + 1] == "41234"
    assert cmd.argv.count("--model") == 1 and cmd.argv[cmd.argv.index("--model") + 1] == str(tmp_path / "model")
    assert cmd.argv[cmd.argv.index("--max-num-seqs") + 1] == "32"
    assert "SHOAL_PORT" not in cmd.env
    assert cmd.env["SHOAL_DRAIN_TIMEOUT"] == "20" and cmd.env["TOKEN"] == "s3cret"
    assert cmd.env["OMP_NUM_THREADS"] == "1"
    assert "POD_NAME" not in cmd.env


def test_missing_configmap_is_named(tmp_path):
    with pytest.raises(PodSpecError, match="chat-runtime"):
        build_command(SPEC, {}, SECRETS, placement(tmp_path))


def test_threads_follow_cores(tmp_path):
    p = Placement(pod_dir=tmp_path, host="127.0.0.1", port=1, cores=(0, 1, 2), model_dir=Path("/m"))
    assert build_command({"containers": [{"name": "engine"}]}, {}, {}, p).env["OMP_NUM_THREADS"] == "3"


def test_operator_style_command_split(tmp_path):
    """The operator's pods say command ["shoal"], args ["serve", ...]: `serve` must not be doubled."""
    spec = {"containers": [{"name": "engine", "command": ["shoal"], "args": ["serve", "--max-num-seqs", "16", "--host", "0.0.0.0"]}]}
    cmd = build_command(spec, {}, {}, placement(tmp_path))
    assert cmd.argv[:4] == [sys.executable, "-m", "shoal", "serve"]
    assert cmd.argv[4:6] == ["--max-num-seqs", "16"] and cmd.argv.count("serve") == 1
    assert cmd.argv[cmd.argv.index("--host") + 1] == "127.0.0.1"
