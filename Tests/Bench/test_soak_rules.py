"""The soak's pass rule (bench/soak.py ``evaluate``, bench/soak_gateway.py ``GatewayLoad.checks``)
on made-up samples: a soak that passes whatever happened would be no evidence. Each case breaks
one thing the rule is there to catch and checks that the verdict is FAIL and names it."""

from __future__ import annotations

import collections
import os
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(REPO, "bench"))  # after the suites' own modules: no name of theirs is shadowed

import soak  # noqa: E402
from soak_gateway import GatewayLoad  # noqa: E402

BASELINE_FDS = 26


def args(**overrides):
    values = dict(warmup_share=0.1, rss_margin=0.10, rss_margin_mib=8, rss_peak_margin=0.20, rss_peak_margin_mib=16,
                  fd_margin=8, fd_margin_final=2, gateway_controller_restart=0, repo=REPO)
    values.update(overrides)
    return types.SimpleNamespace(**values)


def run(load=None, settled=None, failures=0, died=False, gateway=None):
    """A finished soak: 60 load samples at 40 MiB and 40 descriptors, then one settled sample."""
    load = load if load is not None else [{"phase": "load", "rss_kib": 40 * 1024, "fds": 40} for _ in range(60)]
    final = {"phase": "settled", "rss_kib": 40 * 1024, "fds": BASELINE_FDS, "streams_active": 0,
             "console_attachments": 0}
    final.update(settled or {})
    return types.SimpleNamespace(samples=load + [final], failure_count=failures, died=died,
                                 baseline_fds=BASELINE_FDS, gateway=gateway)


def failed(verdict) -> list[str]:
    passed, lines = verdict
    assert all(line.startswith(("- PASS: ", "- FAIL: ")) for line in lines)
    failing = [line for line in lines if line.startswith("- FAIL")]
    assert passed == (not failing), lines
    return failing


def test_a_clean_run_passes():
    assert failed(soak.evaluate(run(), args())) == []


def grown(key: str, amount: int):
    """The load's last third raised by ``amount`` in ``key``."""
    rows = run().samples[:-1]
    for row in rows[-20:]:
        row[key] += amount
    return rows


@pytest.mark.parametrize("case, names", [
    (dict(failures=1), "no lost or corrupted byte"),
    (dict(load=grown("rss_kib", 12 * 1024)), "RSS floor bounded"),
    (dict(load=grown("fds", 9)), "descriptors bounded"),
    (dict(settled={"fds": BASELINE_FDS + 3}), "descriptors back near the baseline"),
    (dict(settled={"streams_active": 1}), "no stream or console attachment left open"),
    (dict(settled={"console_attachments": 1}), "no stream or console attachment left open"),
    (dict(load=[]), "too few load samples"),
])
def test_each_broken_rule_fails_the_run(case, names):
    failing = failed(soak.evaluate(run(**case), args()))
    assert len(failing) == 1 and names in failing[0], failing


def test_a_bridge_that_died_fails_the_run():
    failing = failed(soak.evaluate(run(died=True), args()))
    # Its last samples are no evidence of anything: they are not judged.
    assert [line.split(":")[1].strip() for line in failing] == ["the bridge stayed alive (it died)",
                                                                "no samples after the load"], failing


def test_a_peak_that_grows_fails_even_when_the_floor_holds():
    rows = run().samples[:-1]
    rows[-1]["rss_kib"] += 64 * 1024
    failing = failed(soak.evaluate(run(load=rows), args()))
    assert len(failing) == 1 and "RSS peak bounded" in failing[0], failing


def gateway(restart_every=0, **book):
    load = GatewayLoad(types.SimpleNamespace(), args(gateway_controller_restart=restart_every))
    load.relays_opened, load.refused = book.get("relays", 100), book.get("refused", 5)
    load.restart_windows = book.get("windows", [])
    load.restart_outcomes = collections.Counter(book.get("outcomes", {}))
    return load


GATEWAY_FINAL = {"gw_relays": 0, "gw_router_connections": 0, "gw_relays_total": 100, "gw_refused_tokens": 5,
                 "gw_unavailable": 0, "gw_retried": 0}


@pytest.mark.parametrize("final, load, names", [
    ({"gw_relays": 1}, {}, "no gateway relay or router connection left"),
    ({"gw_router_connections": 1}, {}, "no gateway relay or router connection left"),
    ({"gw_relays_total": 99}, {}, "the gateway counted every relay"),
    ({"gw_refused_tokens": 4}, {}, "the gateway counted every relay"),
    ({"gw_unavailable": 1}, {}, "found the controller unavailable only during its restarts"),
    # Dial goes to the controller directly: its UNAVAILABLE does not excuse the gateway's.
    ({"gw_unavailable": 1}, {"outcomes": {"Dial UNAVAILABLE": 1}}, "unavailable only during its restarts"),
    ({"gw_unavailable": None}, {}, "unavailable only during its restarts"),
    ({}, {"restart_every": 120}, "the controller was restarted"),
    ({}, {"restart_every": 120, "windows": [[1.0, 2.0], [3.0, None]]}, "the Listen call came back"),
])
def test_each_broken_gateway_rule_fails_the_run(final, load, names):
    verdict = soak.evaluate(run(settled={**GATEWAY_FINAL, **final}, gateway=gateway(**load)), args())
    failing = failed(verdict)
    assert len(failing) == 1 and names in failing[0], failing


def test_gateway_unavailable_within_what_the_restarts_explain_passes():
    load = gateway(restart_every=120, windows=[[1.0, 2.0], [3.0, 4.0]],
                   outcomes={"ReportStatus UNAVAILABLE": 1, "probe UNAVAILABLE": 1, "Dial UNAVAILABLE": 3})
    verdict = soak.evaluate(run(settled={**GATEWAY_FINAL, "gw_unavailable": 2}, gateway=load), args())
    assert failed(verdict) == []


ROUTER = "127.0.0.1:40000"
UP, DOWN = b"u" * 300_000, b"d" * 200_000
LOST = f"jmp-bridge gateway: lost the call to {ROUTER} (the server closed the connection)"


def token(sub: str) -> str:
    import base64
    import json

    payload = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.signature"


class Call:
    """The client side's call, as far as ``router_dropped`` asks it."""

    def __init__(self, code):
        self._code = code

    async def code(self):
        return self._code


def router_dropped(tmp_path, *, router_line="stream sub=S end status=OK bytes-to-first=200000 bytes-to-second=300000",
                   code=None, details=LOST, to_client=UP, client_code=None, exporter_write=None) -> bool:
    import asyncio

    import grpc

    log = tmp_path / "router.log"
    log.write_text("stream sub=S peer=ipv4:127.0.0.1:1 waiting\n"
                   "stream sub=S peer=ipv4:127.0.0.1:2 forwarding\n"
                   f"{router_line}\nstream sub=S end status=OK\n")
    load = gateway()
    load.router_endpoint, load.router_log = ROUTER, str(log)
    error = grpc.aio.AioRpcError(code or grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                 details=details)
    results = [exporter_write, None, error, to_client]
    return asyncio.run(load.router_dropped(token("S"), results, UP, DOWN, Call(client_code or grpc.StatusCode.OK)))


def test_a_relay_whose_end_the_router_lost_itself_is_told_apart(tmp_path):
    """The soak counts a relay as the test router's own loss (bench/README.md, "Soak") only with
    the whole story: the gateway's "lost the call" for that router's connection, the client side
    with every byte and OK, and the router's log with the call ending OK and both directions in
    full. Anything less is a failure, as before."""
    import grpc

    assert router_dropped(tmp_path)
    assert router_dropped(tmp_path, details=f"jmp-bridge gateway: lost the call to {ROUTER} (the connection failed: "
                                           "read(descriptor:pointer:size:): Connection reset by peer) (errno: 104))")
    assert router_dropped(tmp_path, exporter_write=grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=LOST))


@pytest.mark.parametrize("case", [
    {"router_line": "stream sub=S end status=CANCELLED bytes-to-first=200000 bytes-to-second=300000"},
    {"router_line": "stream sub=S end status=OK bytes-to-first=199999 bytes-to-second=300000"},
    {"router_line": "stream sub=T end status=OK bytes-to-first=200000 bytes-to-second=300000"},
    {"details": f"jmp-bridge gateway: lost the call to 127.0.0.1:1 (the server closed the connection)"},
    {"details": f"jmp-bridge gateway: lost the call to {ROUTER} (the connection closed)"},
    {"details": "jmp-bridge gateway: unknown router token"},
    {"to_client": UP[:-1]},
    {"exporter_write": RuntimeError("write failed")},
])
def test_anything_less_stays_a_failure(tmp_path, case):
    assert not router_dropped(tmp_path, **case)


@pytest.mark.parametrize("code", ["INTERNAL", "CANCELLED"])
def test_another_status_stays_a_failure(tmp_path, code):
    import grpc

    assert not router_dropped(tmp_path, code=getattr(grpc.StatusCode, code))
    assert not router_dropped(tmp_path, client_code=getattr(grpc.StatusCode, code))
