"""When a TLS listener's certificate expires: a running bridge shows it (``status``,
``status --json``, the metric ``jmp_bridge_tls_certificate_expiry_timestamp_seconds``), warns in
its log two weeks ahead, at start and after each reload, and ``check --files`` warns too; a
renewed certificate loaded with SIGHUP replaces what all of them say (jmp-bridge(8), Listeners).
The same for the certificate the gateway's upstream server presents (its ``upstream`` line, the
metric ``jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds``, a warning when first
seen), and a certificate the gateway refuses for its dates is named as such (jmp-bridge(8),
Gateway). The wording, the daily checks and the expired case:
Tests/JMPBridgeCoreTests/CertificateExpiryTests."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import grpc
import pytest

from conftest import BRIDGE_BINARY, DAY, echo, iso, make_certificate, make_dated_certificate, tls_listener_config
from deployment.fixtures import TIMEOUT, gateway_config
from test_gateway import probe_outcome
from test_metrics import samples, scrape, value
from test_status_json import status_json

METRIC = "jmp_bridge_tls_certificate_expiry_timestamp_seconds"
UPSTREAM_METRIC = "jmp_bridge_gateway_upstream_certificate_expiry_timestamp_seconds"
CA_METRIC = "jmp_bridge_tls_ca_certificate_expiry_timestamp_seconds"


def test_a_certificate_about_to_expire_is_shown_and_warned_of_until_it_is_renewed(start_bridge, unix_server,
                                                                                   sockdir):
    """A listener and the gateway serve a certificate that expires in 3 days: the log warns at
    start (a warning, naming the file and listener), ``status`` shows the notAfter on the
    listener's and the gateway's line, the JSON document has it, the metric holds it as Unix
    time. After the files are renewed (a year) and SIGHUP, all of them show the new date and no
    new warning is logged."""
    cert, key = sockdir / "tls.crt", sockdir / "tls.key"
    expires = make_certificate(cert, key, days=3)
    target = unix_server("echo.sock", echo)
    bridge = start_bridge(
        config=tls_listener_config(cert, key, target.path) + (
            "metrics: tcp:127.0.0.1:0\n"
            "gateway:\n"
            f"  listen: {{address: 'tcp:127.0.0.2:0', tls: {{cert: {cert}, key: {key}}}}}\n"
            "  controller: {endpoint: '127.0.0.1:1', insecure: true}\n"
        )
    )
    warnings = bridge.wait_for_line(rf"TLS certificate {cert} expires in [23] days, at {iso(expires)}; "
                                    r"renew it, then reload \(SIGHUP\)", count=2)
    assert all("warning" in line.lower().split("tls certificate")[0] for line in warnings), warnings
    assert {"listener=tcp:127.0.0.1:0", "listener=tcp:127.0.0.2:0"} == {
        next(word for word in line.split() if word.startswith("listener=")) for line in warnings}, warnings

    def shown() -> tuple[str, str, float, float]:
        reply = bridge.status()
        listener = next(item for item in reply if "listener" in item)
        gateway = next(item for item in reply if "gateway" in item)
        document = status_json(bridge)
        assert document["listeners"][0]["certificate-expires"] == listener["certificate-expires"]
        assert document["gateway"]["certificate-expires"] == gateway["certificate-expires"]
        metrics = next(item["metrics"] for item in reply if "metrics" in item)
        status, _, body = scrape(metrics)
        assert status == 200
        table = samples(body.decode())
        return (listener["certificate-expires"], gateway["certificate-expires"],
                value(table, METRIC, listener="tcp:127.0.0.1:0"), value(table, METRIC, listener="tcp:127.0.0.2:0"))

    assert shown() == (iso(expires), iso(expires), expires, expires)

    renewed = make_certificate(cert, key, days=365)
    bridge.proc.send_signal(signal.SIGHUP)
    bridge.wait_for_line(r"configuration reloaded")
    assert shown() == (iso(renewed), iso(renewed), renewed, renewed)
    assert len([line for line in bridge.log().splitlines() if "TLS certificate" in line and "expires" in line]) == 2


def test_check_files_warns_of_a_certificate_about_to_expire(sockdir):
    """``check --files`` with a listener certificate that expires in 3 days: still exit 0 and
    OK (``serve`` would start), and a warning on stderr located at the listener's ``tls`` key."""
    cert, key = sockdir / "tls.crt", sockdir / "tls.key"
    expires = make_certificate(cert, key, days=3)
    config = sockdir / "bridge.yaml"
    config.write_text(tls_listener_config(cert, key, sockdir / "echo.sock"))
    result = subprocess.run([str(BRIDGE_BINARY), "check", "--files", "--config", str(config)],
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and ": OK: " in result.stdout, result
    assert result.stderr.startswith(
        f"jmp-bridge: warning: {config}:2: listen.tls: TLS certificate {cert} expires in "), result
    assert f"at {iso(expires)}; renew it, then reload (SIGHUP)\n" in result.stderr, result


# ----------------------------------------------------------------------------------------------
# the certificates the gateway's upstream servers present


def test_an_upstream_certificate_about_to_expire_is_shown_and_warned_of_once(start_bridge, dated_controller, tls,
                                                                            event_loop_portal):
    """The controller presents a certificate that expires in 3 days: calls pass, the log warns
    once (a warning naming the controller and its notAfter) however many connections see it, and
    the gateway's ``upstream`` line, the JSON document and the metric show the notAfter. Calls on
    four exporter connections share one upstream connection; a second one, after the controller's
    restart, sees the certificate again without a second warning."""
    now = int(time.time())
    expires = now + 3 * DAY + 3600
    endpoint, cert = dated_controller(now - DAY, expires)
    bridge = start_bridge(config=gateway_config(endpoint, tls, ca=cert), extra_args=["--metrics", "tcp:127.0.0.1:0"])
    # One exporter connection per call: the gateway's one connection to the controller carries them all.
    for _ in range(4):
        assert probe_outcome(event_loop_portal, bridge, tls) == ("answered", None)
    upstream = next(item for item in bridge.status() if item.get("upstream") == endpoint)
    assert (upstream["connections"], upstream["connects"]) == ("1", "1"), upstream
    dated_controller.restart(endpoint)
    # The first call after the restart may still meet the old connection's end ("lost the call",
    # UNAVAILABLE); each call is itself the event waited for, and the loop is bounded.
    deadline = time.monotonic() + TIMEOUT
    while (outcome := probe_outcome(event_loop_portal, bridge, tls)) != ("answered", None):
        assert outcome[0] == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, outcome
    [warning] = bridge.wait_for_line(
        re.escape(f"gateway: the controller's TLS certificate ({endpoint}) expires in 3 days, at {iso(expires)}: ")
        + "from then on the gateway refuses it")
    assert "warning" in warning.lower().split("gateway:")[0], warning

    reply = bridge.status()
    upstream = next(item for item in reply if item.get("upstream") == endpoint)
    assert upstream["certificate-expires"] == iso(expires), upstream
    assert upstream["connects"] == "2", f"the warning's once-only is untested: {upstream}"
    assert bridge.log().count("TLS certificate (") == 1, bridge.log()
    connected = [line for line in bridge.log().splitlines() if "gateway: upstream connected" in line]
    assert all(f"certificate-expires={iso(expires)}" in line for line in connected), connected
    document = status_json(bridge)
    assert document["gateway"]["upstreams"][0]["certificate-expires"] == iso(expires)
    metrics = next(item["metrics"] for item in reply if "metrics" in item)
    status, _, body = scrape(metrics)
    assert status == 200
    assert value(samples(body.decode()), UPSTREAM_METRIC, upstream=endpoint, role="controller") == expires


@pytest.mark.parametrize("dates", ["expired", "not-yet-valid"])
def test_an_upstream_certificate_refused_for_its_dates_says_so(start_bridge, dated_controller, tls,
                                                               event_loop_portal, dates):
    """BoringSSL refuses an expired certificate and one not valid yet as it refuses one from an
    unknown CA (CERTIFICATE_VERIFY_FAILED): the exporter's UNAVAILABLE message, the log and
    ``status`` say which it is, with the date, instead of blaming the CA file."""
    now = int(time.time())
    if dates == "expired":
        not_before, not_after = now - 30 * DAY, now - 2 * DAY
        reason = (f"TLS: the server's certificate expired at {iso(not_after)}; "
                  "the cluster's administrators must renew it")
    else:
        not_before, not_after = now + 2 * DAY, now + 30 * DAY
        reason = f"TLS: the server's certificate is valid only from {iso(not_before)}, and this host's clock says "
    endpoint, cert = dated_controller(not_before, not_after)
    bridge = start_bridge(config=gateway_config(endpoint, tls, ca=cert))
    code, details = probe_outcome(event_loop_portal, bridge, tls)
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert details.startswith(f"jmp-bridge gateway: {endpoint} unreachable: {reason}"), details
    if dates == "not-yet-valid":
        assert re.search(r"says \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: check the clock \(timedatectl\)$", details), details
    upstream = next(item for item in bridge.status() if item.get("upstream") == endpoint)
    assert upstream["state"] == "failed" and upstream["error"].startswith(reason), upstream
    assert "certificate-expires" not in upstream, upstream
    assert "does not chain" not in bridge.log()


# ----------------------------------------------------------------------------------------------
# CA files


def test_an_expired_gateway_ca_is_named_when_the_server_certificate_does_not_chain(start_bridge, dated_controller,
                                                                                  tls, sockdir, event_loop_portal):
    """The controller's certificate is valid but the CA in the gateway's ``ca`` file that signed it
    has expired: the exporter's UNAVAILABLE message and ``status`` say so with the date, and the
    start's log has the CA file's error."""
    now = int(time.time())
    ca, ca_key = sockdir / "cluster-ca.crt", sockdir / "cluster-ca.key"
    make_dated_certificate(ca, ca_key, now - 400 * DAY, now - DAY)
    endpoint, _ = dated_controller(now - 10 * DAY, now + 300 * DAY, signed_by=(ca, ca_key))
    bridge = start_bridge(config=gateway_config(endpoint, tls, ca=ca))
    bridge.wait_for_line(re.escape(f"CA certificate in {ca} expired at {iso(now - DAY)}: the gateway refuses"))
    code, details = probe_outcome(event_loop_portal, bridge, tls)
    reason = (f"TLS: the server's certificate does not chain to the CA certificates in {ca}, one of which expired "
              f"at {iso(now - DAY)}; put the renewed CA in the file, then reload (SIGHUP)")
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert details == f"jmp-bridge gateway: {endpoint} unreachable: {reason}", details
    upstream = next(item for item in bridge.status() if item.get("upstream") == endpoint)
    assert upstream["error"] == reason, upstream



def test_a_renewed_gateway_ca_is_used_after_sighup_at_once(start_bridge, dated_controller, tls, sockdir,
                                                           event_loop_portal):
    """The cluster's CA was renewed and the controller's certificate is signed by the new one,
    which the gateway's ``ca`` file does not hold yet: calls fail ("does not chain"). Once the
    file holds the new CA and the bridge gets SIGHUP, the next call passes at once: the reload
    ends the backoff the failure started (without that, it would fail "next attempt in" for up to
    a second). A file that cannot be loaded fails the reload and changes nothing."""
    now = int(time.time())
    old_ca, new_ca = sockdir / "old-ca.crt", sockdir / "new-ca.crt"
    make_dated_certificate(old_ca, sockdir / "old-ca.key", now - 400 * DAY, now + 30 * DAY)
    make_dated_certificate(new_ca, sockdir / "new-ca.key", now - DAY, now + 400 * DAY)
    endpoint, _ = dated_controller(now - DAY, now + 300 * DAY, signed_by=(new_ca, sockdir / "new-ca.key"))
    ca_file = sockdir / "cluster-ca.pem"
    ca_file.write_bytes(old_ca.read_bytes())
    bridge = start_bridge(config=gateway_config(endpoint, tls, ca=ca_file))
    # Call until one is refused for the backoff: the gateway's connection to the controller has
    # failed and waits.
    for _ in range(64):
        code, details = probe_outcome(event_loop_portal, bridge, tls)
        assert code == grpc.StatusCode.UNAVAILABLE and "does not chain" in details, details
        if "next attempt in" in details:
            break
    else:
        raise AssertionError("no call was refused for the backoff")

    ca_file.write_bytes(new_ca.read_bytes())
    bridge.proc.send_signal(signal.SIGHUP)
    [reloaded] = bridge.wait_for_line(r"TLS certificates reloaded")
    assert "gateway-ca-files=1" in reloaded, reloaded
    assert probe_outcome(event_loop_portal, bridge, tls) == ("answered", None)
    upstream = next(item for item in bridge.status() if item.get("upstream") == endpoint)
    assert upstream["state"] == "ready", upstream

    # A file that cannot be loaded fails the reload, naming it, and changes nothing.
    ca_file.write_text("not a certificate\n")
    bridge.proc.send_signal(signal.SIGHUP)
    bridge.wait_for_line(re.escape(f"TLS files not reloaded: gateway: cannot read the CA certificates in {ca_file}: "
                                   "not a PEM certificate file"))
    assert bridge.log().count("TLS certificates reloaded") == 1


def test_ca_files_about_to_expire_are_warned_of_at_start_and_by_check_files(start_bridge, sockdir, tls):
    """A listener's ``client-ca`` holds two CA certificates, one that expires in 3 days, and the
    gateway's controller ``ca`` one that expires in 5: ``serve`` warns of both at start (by the
    first certificate of each file to expire, naming what stops working and what to do), and
    ``check --files`` at their keys, still exiting 0. ``status`` (the listener's
    ``client-ca-expires``, the gateway's ``controller-ca-expires`` and ``router-ca-expires``, the
    routers using the controller's file), its JSON document and the metric (one series per
    file) show the same dates."""
    lasting, expiring = sockdir / "lasting.crt", sockdir / "expiring.crt"
    make_certificate(lasting, sockdir / "lasting.key", days=365)
    expires = make_certificate(expiring, sockdir / "expiring.key", days=3)
    client_ca = sockdir / "client-ca.pem"
    client_ca.write_bytes(lasting.read_bytes() + expiring.read_bytes())
    gateway_ca = sockdir / "controller-ca.pem"
    gateway_expires = make_certificate(gateway_ca, sockdir / "controller-ca.key", days=5)
    config_text = (
        "listen:\n"
        f"  - {{address: 'tcp:127.0.0.1:0', allow-unauthenticated: true, "
        f"tls: {{cert: {tls.cert}, key: {tls.key}, client-ca: {client_ca}}}}}\n"
        f"routes:\n  echo: {{unix: {sockdir / 'echo.sock'}}}\n"
        "gateway:\n"
        f"  listen: {{address: 'tcp:127.0.0.2:0', tls: {{cert: {tls.cert}, key: {tls.key}}}}}\n"
        f"  controller: {{endpoint: '127.0.0.1:1', ca: {gateway_ca}}}\n"
    )
    client_warning = (rf"CA certificate in {client_ca} \(client-ca\) expires in [23] days, at {iso(expires)}: "
                      r"from then on the client certificates it signed are refused; "
                      r"put the renewed CA in the file, then reload \(SIGHUP\)")
    gateway_warning = (rf"CA certificate in {gateway_ca} expires in [45] days, at {iso(gateway_expires)}: "
                       r"from then on the gateway refuses the server certificates it signed; "
                       r"put the renewed CA in the file, then reload \(SIGHUP\)")

    config = sockdir / "bridge.yaml"
    config.write_text(config_text)
    result = subprocess.run([str(BRIDGE_BINARY), "check", "--files", "--config", str(config)],
                            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and ": OK: " in result.stdout, result
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, result.stderr
    assert re.fullmatch(rf"jmp-bridge: warning: {config}:2: listen\.tls: {client_warning}", warnings[0]), warnings
    assert re.fullmatch(rf"jmp-bridge: warning: {config}:7: gateway\.controller\.ca: {gateway_warning}",
                        warnings[1]), warnings

    bridge = start_bridge(config=config_text, extra_args=["--metrics", "tcp:127.0.0.1:0"])
    [client] = bridge.wait_for_line(client_warning)
    [gateway] = bridge.wait_for_line(gateway_warning)
    assert "listener=tcp:127.0.0.1:0" in client and "warning" in client.lower().split("ca certificate")[0], client
    assert "gateway=tcp:127.0.0.2:0" in gateway, gateway

    reply = bridge.status()
    listener = next(item for item in reply if "listener" in item)
    gateway_line = next(item for item in reply if "gateway" in item)
    assert listener["client-ca-expires"] == iso(expires), listener
    assert (gateway_line["controller-ca-expires"], gateway_line["router-ca-expires"]) == (
        iso(gateway_expires), iso(gateway_expires)), gateway_line
    assert "client-ca-expires" not in gateway_line, gateway_line  # its listener has no client-ca
    document = status_json(bridge)
    assert document["listeners"][0]["client-ca-expires"] == iso(expires)
    assert document["gateway"]["controller-ca-expires"] == iso(gateway_expires)
    metrics = next(item["metrics"] for item in reply if "metrics" in item)
    status, _, body = scrape(metrics)
    assert status == 200
    table = samples(body.decode())
    assert sorted(labels for name, labels in table if name == CA_METRIC) == sorted(
        [(("file", str(client_ca)),), (("file", str(gateway_ca)),)]), body.decode()
    assert value(table, CA_METRIC, file=str(client_ca)) == expires
    assert value(table, CA_METRIC, file=str(gateway_ca)) == gateway_expires
