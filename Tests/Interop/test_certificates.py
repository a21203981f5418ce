"""When a TLS listener's certificate expires: a running bridge shows it (``status``,
``status --json``, the metric ``jmp_bridge_tls_certificate_expiry_timestamp_seconds``), warns in
its log two weeks ahead, at start and after each reload, and ``check --files`` warns too; a
renewed certificate loaded with SIGHUP replaces what all of them say (jmp-bridge(8), Listeners).
The wording and the expired case: Tests/JMPBridgeCoreTests/CertificateExpiryTests."""

from __future__ import annotations

import signal
import subprocess

from conftest import BRIDGE_BINARY, echo, iso, make_certificate, tls_listener_config
from test_metrics import samples, scrape, value
from test_status_json import status_json

METRIC = "jmp_bridge_tls_certificate_expiry_timestamp_seconds"


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
