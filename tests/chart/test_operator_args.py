"""The operator container's rendered arguments parse with the real `shoal operator` command line, and the
ports its probes and Service use are the ones that command then listens on."""

from __future__ import annotations

import pytest

from .conftest import find


def operator_config(objects):
    from shoal.cli import build_parser
    from shoal.operator.commands import config_from_args

    (deployment,) = find(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    return container, config_from_args(args)


@pytest.mark.parametrize("rendered", ["rendered_default", "rendered_all_on"])
def test_rendered_args_make_a_valid_operator_config(request, rendered):
    objects = request.getfixturevalue(rendered)
    container, config = operator_config(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.liveness_port == ports["health"]
    assert config.metrics_port == ports["metrics"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    (service,) = find(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert config.engine_image.startswith("shoal/engine:")
    assert config.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"


def test_namespaces_and_peering_follow_values(rendered_default, rendered_all_on):
    _, default = operator_config(rendered_default)
    assert default.all_namespaces and not default.namespaces
    (peering,) = find(rendered_default, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == default.peering_name

    _, scoped = operator_config(rendered_all_on)
    assert not scoped.all_namespaces and set(scoped.namespaces) == {"ml", "dev"}
    peerings = find(rendered_all_on, "KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"ml", "dev"}
    assert {p["metadata"]["name"] for p in peerings} == {scoped.peering_name}
    assert not find(rendered_all_on, "ClusterKopfPeering")
