"""``jmp-bridge status --json``: one JSON document, valid against ``docs/status.schema.json``,
with the same facts as the text reply (jmp-bridge(8), STATUS JSON)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import BRIDGE_BINARY, echo, parse_status_line
from deployment.fixtures import *  # noqa: F403 - the deployment fixtures
from deployment.fixtures import leased_client

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "status.schema.json").read_text())


@pytest.fixture
def deployment_path() -> str:
    """The exporter here goes through the gateway."""
    return "gateway"


def status_json(bridge) -> dict:
    result = subprocess.run([str(BRIDGE_BINARY), "status", "--json", "--control", str(bridge.control)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return document


def test_routes_and_listeners(start_bridge, unix_server, sockdir):
    server = unix_server("echo", echo)
    door = sockdir / "door.sock"
    bridge = start_bridge(routes={"echo": server.path}, extra_args=["--local", f"echo=unix:{door}"])
    document = status_json(bridge)
    text = bridge.status()
    assert document["schema"] == "jmp-bridge.status/1"
    assert document["bridge"]["state"] == "ready" and document["bridge"]["default-route"] == "echo"
    assert document["bridge"]["streams-total"] == int(text[0]["streams-total"])
    assert [listener["address"] for listener in document["listeners"]] == \
        [item["listener"] for item in text if "listener" in item]
    assert document["listeners"][0]["tls"] is True and document["listeners"][0]["address"].startswith("tcp:")
    (route,) = document["routes"]
    assert route == {"name": "echo", "type": "unix", "target": str(server.path), "door": f"unix:{door}",
                     "door-connections": 0, "door-total": 0, "door-refused": 0}
    assert document["gateway"] is None
    assert "metrics" not in document["bridge"]  # no endpoint configured


def test_gateway_with_an_exporter_listening(controller, router_process, gateway, exporter, client_config,
                                           event_loop_portal):
    with leased_client(client_config, event_loop_portal) as (lease, client):
        assert client.children["power"].on() is None
        document = status_json(gateway)
        gw = document["gateway"]
        # The gateway fixture serves metrics: the bound address, as in the text reply.
        assert document["bridge"]["metrics"] == gateway.status()[0]["metrics"]
        assert document["bridge"]["metrics"].startswith("tcp:127.0.0.1:")
        assert gw["address"] == f"tcp:{gateway.gateway_endpoint}" and gw["advertise"] == gateway.gateway_endpoint
        assert gw["controller"] == controller.endpoint
        assert gw["relays-total"] >= 1 and gw["refused-tokens"] == 0
        assert [call["lease"] for call in gw["listen-calls"]] == [lease.name]
        assert gw["listen-calls"][0]["exporter"] == "lab/exporter-1"
        roles = {upstream["endpoint"]: upstream["role"] for upstream in gw["upstreams"]}
        assert roles == {controller.endpoint: "controller", router_process.endpoint: "router"}
        assert all(upstream["state"] == "ready" for upstream in gw["upstreams"])
    assert document["listeners"] == [] and document["routes"] == []
    assert parse_status_line(f"gateway={gw['address']}")["gateway"] == gw["address"]
