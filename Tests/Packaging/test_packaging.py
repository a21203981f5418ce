"""Packaging tests: make install, the systemd units, the man pages, the .deb and the .rpm.

* The units are checked with Debian's ``systemd-analyze verify`` after a real ``make install`` into
  a temporary PREFIX, so the ExecStart binary and the Documentation= man pages exist where the
  installed units say; any warning it prints fails the test, not only its exit status.
* The man pages: ``mandoc -Tlint`` clean; every subcommand, option and argument that
  ``jmp-bridge --help`` (and each subcommand's ``--help``) shows is in jmp-bridge(8), in the
  subcommand's own subsection; every key the configuration parser accepts (its key tables in
  Sources/JMPBridgeCore/Configuration) is an ``.It Ic KEY`` item of jmp-bridge.yaml(5) and stands
  in the shipped example (packaging/examples/bridge.yaml), which passes ``check``.
* ``make deb`` and ``make rpm`` with BINARY set to the binary under test (``$JMP_BRIDGE``),
  inspected with dpkg-deb, lintian and rpm; the extracted binary runs, checks the configuration the
  package installs, and keeps its function names for backtraces (MiniDebugInfo).

* The binary ``make static-release`` builds for the packages (``$JMP_BRIDGE_PACKAGED``, else
  ``.build/release/jmp-bridge``) is linked as the Makefile says: Swift runtime inside, full RELRO,
  packed relative relocations, no exported symbols. ``scripts/test`` then runs the interop and
  packaging tests a second time with that binary as ``$JMP_BRIDGE``.

The binary is ``$JMP_BRIDGE`` (``scripts/test`` sets it), else ``.build/debug/jmp-bridge``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("JMP_BRIDGE") or REPO / ".build" / "debug" / "jmp-bridge").absolute()
PACKAGED_BINARY = Path(
    os.environ.get("JMP_BRIDGE_PACKAGED") or REPO / ".build" / "release" / "jmp-bridge"
).absolute()
MAN8 = REPO / "man" / "jmp-bridge.8"
MAN5 = REPO / "man" / "jmp-bridge.yaml.5"
UNIT_DIR = REPO / "packaging" / "systemd"
UNITS = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket"))
CONFIG_SOURCES = REPO / "Sources" / "JMPBridgeCore" / "Configuration"


def run(*args, check=True, env=None, cwd=REPO, timeout=900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def binary_version() -> str:
    return run(BINARY, "--version").stdout.strip()


@pytest.fixture(scope="module", autouse=True)
def binary_exists():
    assert os.access(BINARY, os.X_OK), f"no jmp-bridge binary at {BINARY} (set JMP_BRIDGE or run swift build)"


# --------------------------------------------------------------------------------------------
# make install


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """A real `make install` into a temporary PREFIX (and SYSCONFDIR), without DESTDIR, so the
    installed units name files that exist."""
    root = tmp_path_factory.mktemp("install")
    run("make", "-s", "install", f"PREFIX={root}/usr", f"SYSCONFDIR={root}/etc", f"BINARY={BINARY}")
    return root


INSTALLED = [
    "usr/bin/jmp-bridge",
    "usr/lib/sysusers.d/jmp-bridge.conf",
    "usr/lib/tmpfiles.d/jmp-bridge.conf",
    "usr/share/man/man8/jmp-bridge.8",
    "usr/share/man/man5/jmp-bridge.yaml.5",
    "usr/share/bash-completion/completions/jmp-bridge",
    "usr/share/zsh/site-functions/_jmp-bridge",
    "usr/share/fish/vendor_completions.d/jmp-bridge.fish",
    "usr/share/doc/jmp-bridge/README.md",
    "usr/share/doc/jmp-bridge/examples/bridge.yaml",
    "usr/share/doc/jmp-bridge/examples/grafana-dashboard.json",
    "etc/jmp-bridge/bridge.yaml",
] + [f"usr/lib/systemd/system/{unit}" for unit in UNITS]


def test_make_install_puts_every_file_in_place(prefix):
    missing = [path for path in INSTALLED if not (prefix / path).is_file()]
    assert not missing, f"make install did not install: {missing}"
    assert os.access(prefix / "usr/bin/jmp-bridge", os.X_OK)
    assert (prefix / "etc/jmp-bridge/bridge.yaml").read_text() == (
        REPO / "packaging/examples/bridge.yaml"
    ).read_text()
    for unit in UNITS:
        assert (prefix / "usr/lib/systemd/system" / unit).stat().st_mode & 0o777 == 0o644, unit


def test_installed_units_name_the_installed_binary_and_config(prefix):
    service = (prefix / "usr/lib/systemd/system/jmp-bridge.service").read_text()
    assert f"ExecStart={prefix}/usr/bin/jmp-bridge serve --config {prefix}/etc/jmp-bridge/bridge.yaml\n" in service
    template = (prefix / "usr/lib/systemd/system/jmp-bridge@.service").read_text()
    assert f"ExecStart={prefix}/usr/bin/jmp-bridge serve --config {prefix}/etc/jmp-bridge/%i.yaml\n" in template
    assert "/usr/bin/jmp-bridge serve --config /etc/" not in service


def test_completions_are_generated_by_the_binary(prefix):
    bash = (prefix / "usr/share/bash-completion/completions/jmp-bridge").read_text()
    zsh = (prefix / "usr/share/zsh/site-functions/_jmp-bridge").read_text()
    fish = (prefix / "usr/share/fish/vendor_completions.d/jmp-bridge.fish").read_text()
    assert not bash.startswith("#!"), "bash completions are sourced: no #! line (lintian)"
    assert re.search(r"^complete .*-F _jmp-bridge jmp-bridge$", bash, re.M), bash[-200:]
    assert zsh.startswith("#compdef jmp-bridge")
    assert "complete -c 'jmp-bridge'" in fish or "complete -c jmp-bridge" in fish
    # Every subcommand of the binary can be completed.
    for subcommand in subcommands_of([]):
        assert subcommand in bash and subcommand in zsh and subcommand in fish, subcommand
    assert run("bash", "-n", prefix / "usr/share/bash-completion/completions/jmp-bridge").returncode == 0


def test_make_install_keeps_an_existing_configuration_and_uninstall_leaves_only_it(tmp_path):
    dest = tmp_path / "dest"
    make = ["make", "-s", f"DESTDIR={dest}", "PREFIX=/usr", f"BINARY={BINARY}"]
    run(*make, "install")
    config = dest / "etc/jmp-bridge/bridge.yaml"
    assert config.is_file()
    # The /usr layout follows systemd's own pkg-config paths (Debian 12: /lib/systemd/system).
    unitdir = run("pkg-config", "--variable=systemdsystemunitdir", "systemd").stdout.strip()
    assert (dest / unitdir.lstrip("/") / "jmp-bridge.service").is_file()
    assert (dest / "usr/share/zsh/vendor-completions/_jmp-bridge").is_file()

    config.write_text("# edited by the administrator\n")
    result = run(*make, "install")
    assert "keeping" in result.stdout
    assert config.read_text() == "# edited by the administrator\n"

    run(*make, "uninstall")
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert left == ["etc/jmp-bridge/bridge.yaml"], f"make uninstall left {left}"


# --------------------------------------------------------------------------------------------
# systemd units


def systemd_verify(prefix: Path, *units: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MANPATH=str(prefix / "usr/share/man"), SYSTEMD_LOG_COLOR="0")
    return run(
        "systemd-analyze", "verify", *units, check=False, env=env, cwd=prefix / "usr/lib/systemd/system"
    )


def test_systemd_analyze_verify_passes_on_every_unit_without_a_warning(prefix):
    # Templates are verified as an instance, as systemd would load them.
    units = [f"./{u.replace('@.', '@lab1.')}" for u in UNITS]
    assert any("@lab1.service" in u for u in units) and any(u.endswith(".socket") for u in units)
    for unit in units:
        result = systemd_verify(prefix, unit)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and output == "", f"systemd-analyze verify {unit}:\n{output}"


def test_systemd_analyze_verify_reports_a_broken_unit(prefix, tmp_path):
    """The check above would notice a bad line: verify only warns (exit 0) on unknown keys."""
    unitdir = prefix / "usr/lib/systemd/system"
    broken = unitdir / "jmp-bridge-broken.service"
    broken.write_text(
        (unitdir / "jmp-bridge.service").read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes")
    )
    try:
        result = systemd_verify(prefix, "./jmp-bridge-broken.service")
    finally:
        broken.unlink()
    assert "Unknown key" in result.stderr and "ProtectHomes" in result.stderr


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    section, settings = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        settings.append((section, key, value))
    return settings


def test_service_is_hardened_and_keeps_consoles_working():
    settings = unit_settings((UNIT_DIR / "jmp-bridge.service").read_text())
    service = {key: value for section, key, value in settings if section == "[Service]"}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/bin/jmp-bridge serve --config /etc/jmp-bridge/bridge.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "30s",
        "FileDescriptorStoreMax": "64",
        "Restart": "on-failure",
        "User": "jmp-bridge",
        "SupplementaryGroups": "dialout",
        "RuntimeDirectory": "jmp-bridge",
        "RuntimeDirectoryPreserve": "yes",
        "UMask": "0007",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictRealtime": "yes",
        "RestrictNamespaces": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "RemoveIPC": "yes",
        "PrivateMounts": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }
    wrong = {k: (service.get(k), v) for k, v in expected.items() if service.get(k) != v}
    assert not wrong, f"jmp-bridge.service settings (have, want): {wrong}"
    assert "TimeoutStopSec" in service
    devices = {value for section, key, value in settings if key == "DeviceAllow"}
    # Consoles need /dev/ptmx and /dev/pts; serial routes the USB serial devices.
    assert {"/dev/ptmx rw", "char-pts rw", "char-ttyUSB rw", "char-ttyACM rw"} <= devices
    # PrivateDevices= would hide serial devices; FileDescriptorStorePreserve= is unknown to systemd 252.
    assert "PrivateDevices" not in service and "FileDescriptorStorePreserve" not in service


def test_systemd_analyze_security_rates_the_service_exposure_low(prefix):
    """systemd's own rating of the sandbox, offline: a dropped hardening line raises it."""
    env = dict(os.environ, MANPATH=str(prefix / "usr/share/man"), SYSTEMD_LOG_COLOR="0")
    result = run(
        "systemd-analyze", "security", "--offline=true", "--no-pager", "./jmp-bridge.service",
        env=env, cwd=prefix / "usr/lib/systemd/system",
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for jmp-bridge\.service: ([\d.]+)", result.stdout)
    assert exposure, result.stdout + result.stderr
    assert float(exposure.group(1)) <= 2.0, result.stdout


def test_sockets_pass_named_descriptors_to_the_service():
    grpc = dict((k, v) for s, k, v in unit_settings((UNIT_DIR / "jmp-bridge.socket").read_text()) if s == "[Socket]")
    assert grpc["ListenStream"] == "/run/jmp-bridge/grpc.sock"
    assert grpc["FileDescriptorName"] == "grpc"
    assert (grpc["SocketMode"], grpc["SocketGroup"]) == ("0660", "jmp-bridge")
    control = dict(
        (k, v) for s, k, v in unit_settings((UNIT_DIR / "jmp-bridge-control.socket").read_text()) if s == "[Socket]"
    )
    assert control["FileDescriptorName"] == "control"
    assert control["Service"] == "jmp-bridge.service"
    # The control socket is opt-in: the bridge fails to start when a passed socket goes unused, so
    # the service must not pull it in for a configuration without `control: systemd:control`.
    for unit in ("jmp-bridge.service", "jmp-bridge@.service"):
        pulls = [v for s, k, v in unit_settings((UNIT_DIR / unit).read_text()) if k in ("Wants", "Requires", "Also")]
        assert not any("control" in v for v in pulls), f"{unit}: {pulls}"
    # FileDescriptorName= names every socket of a unit: one name per socket unit.
    for unit in UNITS:
        if unit.endswith(".socket"):
            names = [v for s, k, v in unit_settings((UNIT_DIR / unit).read_text()) if k == "FileDescriptorName"]
            assert len(names) == 1, f"{unit}: {names}"


def test_templates_differ_from_the_main_units_only_in_names_and_paths():
    """The @ templates are copies; any other drift (a hardening line added to one only) fails."""

    def normalise(text: str, instance: bool) -> list[tuple[str, str, str]]:
        if instance:
            text = (
                text.replace("jmp-bridge@%i.", "jmp-bridge.")
                .replace("jmp-bridge-control@%i.", "jmp-bridge-control.")
                .replace("/etc/jmp-bridge/%i.yaml", "/etc/jmp-bridge/bridge.yaml")
                .replace("/run/jmp-bridge/%i/", "/run/jmp-bridge/")
                .replace("RuntimeDirectory=jmp-bridge/%i", "RuntimeDirectory=jmp-bridge")
                .replace(" %i", "")
            )
        return unit_settings(text)

    for main, template in [
        ("jmp-bridge.service", "jmp-bridge@.service"),
        ("jmp-bridge.socket", "jmp-bridge@.socket"),
        ("jmp-bridge-control.socket", "jmp-bridge-control@.socket"),
    ]:
        a = normalise((UNIT_DIR / main).read_text(), False)
        b = normalise((UNIT_DIR / template).read_text(), True)
        assert a == b, f"{template} drifted from {main}: {set(a) ^ set(b)}"


def test_sysusers_and_tmpfiles_entries_are_valid(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("")
    (root / "etc/group").write_text("dialout:x:20:\n")
    run("systemd-sysusers", f"--root={root}", REPO / "packaging/sysusers.d/jmp-bridge.conf")
    passwd = (root / "etc/passwd").read_text()
    group = (root / "etc/group").read_text()
    assert re.search(r"^jmp-bridge:x:\d+:\d+:", passwd, re.M), passwd
    assert re.search(r"^dialout:x:20:jmp-bridge$", group, re.M), group
    assert re.search(r"^jmp-bridge:x:\d+:", group, re.M), group
    # /run/jmp-bridge, owned by that user, as systemd-tmpfiles creates it at boot.
    run("systemd-tmpfiles", f"--root={root}", "--create", REPO / "packaging/tmpfiles.d/jmp-bridge.conf")
    uid, gid = re.search(r"^jmp-bridge:x:(\d+):(\d+):", passwd, re.M).groups()
    run_dir = (root / "run/jmp-bridge").stat()
    assert (run_dir.st_mode & 0o7777, run_dir.st_uid, run_dir.st_gid) == (0o755, int(uid), int(gid))


# --------------------------------------------------------------------------------------------
# man pages


@pytest.mark.parametrize("page", sorted((REPO / "man").glob("*.[1-8]")), ids=lambda p: p.name)
def test_mandoc_lint_is_clean(page):
    result = run("mandoc", "-Tlint", "-W", "warning", page, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def help_sections(args: list[str]) -> dict[str, list[str]]:
    """The sections (OPTIONS, SUBCOMMANDS, ARGUMENTS) of `jmp-bridge ARGS --help`, as their entry
    lines: swift-argument-parser indents an entry by two spaces and wraps it deeper."""
    text = run(BINARY, *args, "--help").stdout
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^[A-Z ]+:$", line):
            current = line[:-1]
            sections[current] = []
        elif current and re.match(r"^  \S", line):
            sections[current].append(line.strip())
    return sections


def subcommands_of(args: list[str]) -> list[str]:
    # "  serve   Serve ..." or "  serve (default)   ...", not the closing "  See 'jmp-bridge help ...'".
    names = []
    for entry in help_sections(args).get("SUBCOMMANDS", []):
        match = re.match(r"^([a-z][a-z0-9-]*)(?: \(default\))?(?:\s{2,}|$)", entry)
        if match:
            names.append(match.group(1))
    return names


def option_entries(args: list[str]) -> list[list[str]]:
    """The spellings of each option, e.g. [['-c', '--config'], ['--listen'], ['-h', '--help']]."""
    entries = []
    for entry in help_sections(args).get("OPTIONS", []):
        head = re.split(r"\s{2,}", entry)[0]
        entries.append(re.findall(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)", re.sub(r"<[^>]*>", "", head)))
    return [spellings for spellings in entries if spellings]


def options_of(args: list[str]) -> list[str]:
    """Every option spelling, e.g. ['-c', '--config', '--listen', '--version', '-h', '--help']."""
    return [spelling for spellings in option_entries(args) for spelling in spellings]


def arguments_of(args: list[str]) -> list[str]:
    return [re.sub(r"[<>.]", "", entry.split()[0]) for entry in help_sections(args).get("ARGUMENTS", [])]


def mdoc_has_option(text: str, spelling: str) -> bool:
    # `--listen` is written `Fl -listen`, `-c` is `Fl c` (also `Fl h | -help`, `, Fl -config`).
    flag = spelling[1:]
    return re.search(r"\bFl " + re.escape(flag) + r"(?![\w-])", text) is not None or re.search(
        r"\bFl \S+ \| " + re.escape(flag) + r"(?![\w-])", text
    ) is not None


def subsection(text: str, name: str) -> str | None:
    match = re.search(r"^\.Ss " + re.escape(name) + r"\n(.*?)(?=^\.S[hs] )", text, re.M | re.S)
    return match.group(1) if match else None


def command_paths(args: list[str] | None = None) -> list[list[str]]:
    args = args or []
    assert len(args) < 4, f"runaway subcommand parse: {args}"
    paths = []
    for name in subcommands_of(args):
        if name == "help":
            continue
        paths.append(args + [name])
        paths += command_paths(args + [name])
    return paths


def test_help_output_is_parsed():
    """The parsing below sees what the binary offers, so an empty parse cannot pass vacuously."""
    assert {"serve", "check"} <= set(subcommands_of([]))
    assert {"--version", "-h", "--help"} <= set(options_of([]))
    assert {"-c", "--config", "--listen", "--route", "--grace"} <= set(options_of(["serve"]))


def test_every_subcommand_option_and_argument_is_in_jmp_bridge_8():
    text = MAN8.read_text()
    commands = text[text.index(".Sh COMMANDS") :]
    commands = commands[: commands.index("\n.Sh ", 1)]
    missing = []
    for option in options_of([]):
        if not mdoc_has_option(text, option):
            missing.append(f"jmp-bridge {option}")
    for path in command_paths():
        name = " ".join(path)
        if not re.search(r"^\.Cm " + re.escape(path[-1]) + r"\b", text, re.M):
            missing.append(f"subcommand {name} (no .Cm {path[-1]})")
        section = subsection(commands, name) or subsection(commands, path[-1])
        if section is None:
            missing.append(f"subcommand {name}: no '.Ss {name}' in COMMANDS")
            continue
        for option in options_of(path):
            if not mdoc_has_option(section, option):
                missing.append(f"jmp-bridge {name} {option} (in .Ss {name})")
        for argument in arguments_of(path):
            if not re.search(r"\bAr " + re.escape(argument) + r"\b", section, re.I):
                missing.append(f"jmp-bridge {name} argument {argument} (in .Ss {name})")
    assert not missing, "jmp-bridge(8) does not document: " + "; ".join(missing)


def synopsis_of(text: str, subcommand: str) -> str | None:
    """The SYNOPSIS lines of one subcommand: from its `.Cm NAME` to the next `.Nm`."""
    synopsis = text[text.index(".Sh SYNOPSIS") :]
    synopsis = synopsis[: synopsis.index("\n.Sh ", 1)]
    match = re.search(r"^\.Cm " + re.escape(subcommand) + r"\n(.*?)(?=^\.Nm\b|\Z)", synopsis, re.M | re.S)
    return match.group(1) if match else None


def test_every_subcommand_option_is_in_the_synopsis():
    """The SYNOPSIS is the page's summary: an option the binary takes but the synopsis leaves out
    is one an operator reading it never learns of (`--version` and `--help` have lines of their own)."""
    text = MAN8.read_text()
    missing = []
    for path in command_paths():
        synopsis = synopsis_of(text, path[-1])
        if synopsis is None:
            missing.append(f"subcommand {' '.join(path)} (no .Cm {path[-1]} in SYNOPSIS)")
            continue
        for spellings in option_entries(path):
            if {"--version", "--help"} & set(spellings):
                continue
            if not any(mdoc_has_option(synopsis, spelling) for spelling in spellings):
                missing.append(f"jmp-bridge {' '.join(path)} {'/'.join(spellings)}")
    assert not missing, "jmp-bridge(8)'s SYNOPSIS leaves out: " + "; ".join(missing)


def parser_keys() -> dict[str, list[str]]:
    """The parser's key tables (`static let listenerKeys = ["address", ...]`), from the source."""
    tables = {}
    for source in sorted(CONFIG_SOURCES.glob("*.swift")):
        for match in re.finditer(
            r"static let (\w*[kK]eys)\s*(?::[^=]*)?=\s*\[(.*?)\]", source.read_text(), re.S
        ):
            tables[f"{source.name}:{match.group(1)}"] = re.findall(r'"([^"]+)"', match.group(2))
    return tables


def test_every_configuration_key_is_in_jmp_bridge_yaml_5():
    tables = parser_keys()
    keys = {key for table in tables.values() for key in table}
    # The tables are where the parser's `allowed:` keys come from; an empty parse cannot pass.
    assert {"listen", "routes", "address", "tls", "unix", "pty", "linger"} <= keys, tables
    text = MAN5.read_text()
    missing = sorted(key for key in keys if not re.search(r"^\.It Ic " + re.escape(key) + r"\b", text, re.M))
    assert not missing, f"jmp-bridge.yaml(5) has no '.It Ic KEY' item for: {missing} (key tables: {tables})"


def test_shipped_configuration_passes_check():
    result = run(BINARY, "check", "--config", REPO / "packaging/examples/bridge.yaml")
    assert ": OK:" in result.stdout


def test_shipped_configuration_shows_every_key():
    """The commented example is where an operator looks first: every key the parser accepts
    stands in it as a YAML key, set or commented out (`# key:`, or `key:` quoted in a comment)."""
    keys = {key for table in parser_keys().values() for key in table}
    text = (REPO / "packaging/examples/bridge.yaml").read_text()
    missing = sorted(key for key in keys if not re.search(r"(^|[\s{,#`])" + re.escape(key) + r":", text, re.M))
    assert not missing, f"packaging/examples/bridge.yaml does not show: {missing}"


# --------------------------------------------------------------------------------------------
# Debian package


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("deb")
    env = dict(os.environ, DEB_COMPRESSION="gzip")  # faster than xz for a debug binary
    run("make", "-s", "deb", f"BINARY={BINARY}", f"DISTDIR={dist}", env=env)
    debs = list(dist.glob("*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def deb_version() -> str:
    return run("dpkg-parsechangelog", "-l", REPO / "packaging/debian/changelog", "-S", "Version").stdout.strip()


def test_deb_is_named_and_versioned_after_the_binary(deb):
    arch = run("dpkg", "--print-architecture").stdout.strip()
    version = deb_version()
    assert version.rsplit("-", 1)[0] == binary_version()
    assert deb.name == f"jmp-bridge_{version}_{arch}.deb"
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert f"Version: {version}\n" in fields and f"Architecture: {arch}\n" in fields
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    assert re.search(r"\blibc6 \(>= [\d.]+\)", depends), depends  # computed by dpkg-shlibdeps
    assert "systemd-sysusers" in depends and "systemd-tmpfiles" in depends


def test_deb_contents(deb):
    listing = run("dpkg-deb", "-c", deb).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split(None, 5)
        entries[parts[5].split(" -> ")[0].removeprefix(".")] = (parts[0], parts[1])
    unitdir = run("pkg-config", "--variable=systemdsystemunitdir", "systemd").stdout.strip()
    expected = [
        "/usr/bin/jmp-bridge",
        "/etc/jmp-bridge/bridge.yaml",
        "/usr/lib/sysusers.d/jmp-bridge.conf",
        "/usr/lib/tmpfiles.d/jmp-bridge.conf",
        "/usr/share/man/man8/jmp-bridge.8.gz",
        "/usr/share/man/man5/jmp-bridge.yaml.5.gz",
        "/usr/share/doc/jmp-bridge/copyright",
        "/usr/share/doc/jmp-bridge/changelog.Debian.gz",
        "/usr/share/bash-completion/completions/jmp-bridge",
        "/usr/share/zsh/vendor-completions/_jmp-bridge",
        "/usr/share/fish/vendor_completions.d/jmp-bridge.fish",
    ] + [f"{unitdir}/{unit}" for unit in UNITS]
    missing = [path for path in expected if path not in entries]
    assert not missing, f"not in the .deb: {missing}\n{listing}"
    assert entries["/usr/bin/jmp-bridge"] == ("-rwxr-xr-x", "root/root")
    assert all(owner == "root/root" for _, owner in entries.values())
    assert run("dpkg-deb", "-I", deb, "conffiles").stdout.split() == ["/etc/jmp-bridge/bridge.yaml"]


def test_deb_maintainer_scripts_use_the_debian_tools(deb, tmp_path):
    control = tmp_path / "control"
    run("dpkg-deb", "-e", deb, control)
    postinst = (control / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "jmp-bridge.conf" in postinst
    assert "systemd-tmpfiles" in postinst and "--create" in postinst
    assert "deb-systemd-helper" in postinst and "try-restart jmp-bridge.service" in postinst
    assert "deb-systemd-invoke stop" in (control / "prerm").read_text()
    assert "deb-systemd-helper purge" in (control / "postrm").read_text()
    for script in ("postinst", "prerm", "postrm"):
        assert (control / script).stat().st_mode & 0o777 == 0o755
        run("sh", "-n", control / script)
    # md5sums cover the binary, not the conffile.
    md5sums = (control / "md5sums").read_text()
    assert "usr/bin/jmp-bridge" in md5sums and "etc/jmp-bridge" not in md5sums


def test_deb_maintainer_scripts_create_the_user_and_enable_nothing(deb, tmp_path):
    """postinst/postrm run as dpkg runs them for an install into DPKG_ROOT: the user is created
    in dialout, no unit is enabled on a fresh install (the configuration comes first), and purge
    forgets the units' enablement state."""
    root = tmp_path / "root"
    run("dpkg-deb", "-x", deb, root)
    run("dpkg-deb", "-e", deb, tmp_path / "control")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc/shadow").write_text("")
    (root / "etc/gshadow").write_text("")

    def script(name, *args):
        env = dict(os.environ, DPKG_ROOT=str(root), DPKG_MAINTSCRIPT_PACKAGE="jmp-bridge", DPKG_MAINTSCRIPT_NAME=name)
        return run("sh", "-e", tmp_path / "control" / name, *args, env=env)

    script("postinst", "configure")
    assert re.search(r"^jmp-bridge:x:\d+:\d+:", (root / "etc/passwd").read_text(), re.M)
    assert re.search(r"^dialout:x:20:jmp-bridge$", (root / "etc/group").read_text(), re.M)
    enabled = [p for p in root.rglob("*.wants/*")]
    assert not enabled, f"a fresh install enabled {enabled}"
    state = root / "var/lib/systemd/deb-systemd-helper-enabled"
    assert {p.name for p in state.iterdir()} >= {"jmp-bridge.socket.dsh-also", "jmp-bridge.service.dsh-also"}

    script("prerm", "remove")
    script("postrm", "remove")
    script("postrm", "purge")
    assert not state.exists() or not any(state.iterdir()), list(state.iterdir())
    assert not (root / "var/lib/systemd/deb-systemd-helper-masked").exists() or not any(
        (root / "var/lib/systemd/deb-systemd-helper-masked").iterdir()
    )


def test_lintian_finds_no_errors(deb):
    # --fail-on none: the exit status then means only that lintian itself worked; errors are the
    # E: lines (overridden tags are shown as O: lines).
    result = run("lintian", "--fail-on", "none", "--tag-display-limit", "0", "--show-overrides", "-I", deb)
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    assert tags, "lintian printed no tags at all, not even the overridden ones:\n" + result.stdout + result.stderr
    errors = [line for line in tags if line.startswith("E: ")]
    assert not errors, "lintian errors:\n" + result.stdout + result.stderr
    # Only the overrides packaging/debian documents: the libyaml inside Yams, and, for a binary
    # that loads the Swift runtime from the toolchain (a debug build), its RUNPATH.
    overridden = {line.split()[2] for line in tags if line.startswith("O: ")}
    assert overridden <= {"embedded-library", "custom-library-search-path"}, overridden
    warnings = [line for line in tags if line.startswith("W: ")]
    print("lintian warnings:", *warnings, sep="\n  ")


@pytest.fixture(scope="module")
def extracted(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deb-root")
    run("dpkg-deb", "-x", deb, root)
    return root


def test_extracted_binary_runs_and_checks_the_packaged_configuration(extracted):
    binary = extracted / "usr/bin/jmp-bridge"
    assert run(binary, "--version").stdout.strip() == binary_version()
    result = run(binary, "check", "--config", extracted / "etc/jmp-bridge/bridge.yaml")
    assert ": OK:" in result.stdout
    # The packaged binary is stripped (Debian policy).
    assert ".symtab" not in run("readelf", "-S", binary).stdout


def test_extracted_binary_keeps_function_names_for_backtraces(extracted):
    """Stripped, with the function symbols in .gnu_debugdata (MiniDebugInfo): gdb, as
    systemd-coredump and eu-stack do, names the C entry point and the bridge's Swift functions."""
    binary = extracted / "usr/bin/jmp-bridge"
    assert ".gnu_debugdata" in run("readelf", "-S", "--wide", binary).stdout
    names = run("gdb", "-nx", "-batch", "-ex", "info functions ^jmp_bridge_main$",
                "-ex", "info functions 13JMPBridgeCore12BridgeServerC", binary).stdout
    assert re.search(r"^0x[0-9a-f]+\s+jmp_bridge_main$", names, re.M), names
    assert re.search(r"^0x[0-9a-f]+\s+\$s13JMPBridgeCore12BridgeServerC\w+$", names, re.M), names


def test_extracted_units_verify(extracted):
    """The .deb's own units, against its own binary: ExecStart= is rewritten to the extracted path
    only, as /usr/bin/jmp-bridge exists only once the package is installed."""
    unitdir = Path(run("pkg-config", "--variable=systemdsystemunitdir", "systemd").stdout.strip())
    units = extracted / unitdir.relative_to("/")
    work = extracted / "verify"
    work.mkdir()
    for unit in UNITS:
        text = (units / unit).read_text()
        assert "ExecStart=/usr/bin/jmp-bridge " in text or unit.endswith(".socket")
        (work / unit).write_text(text.replace("/usr/bin/jmp-bridge", str(extracted / "usr/bin/jmp-bridge")))
    man = extracted / "usr/share/man"
    env = dict(os.environ, MANPATH=str(man), SYSTEMD_LOG_COLOR="0")
    for unit in UNITS:
        name = "./" + unit.replace("@.", "@lab1.")
        result = run("systemd-analyze", "verify", name, check=False, env=env, cwd=work)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not output, f"{unit}: {output}"


def test_extracted_binary_serves_a_socket_passed_by_systemd_socket_activate(extracted, tmp_path):
    """Debian's systemd-socket-activate passes a named socket (FileDescriptorName=grpc, as
    jmp-bridge.socket does) to the packaged binary, which serves a stream through it."""
    sockdir = Path(tempfile.mkdtemp(prefix="jmpb-", dir="/tmp"))
    try:
        echo_path, grpc_path = sockdir / "echo.sock", sockdir / "grpc.sock"
        echo = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        echo.bind(str(echo_path))
        echo.listen()

        def serve_echo():
            connection, _ = echo.accept()
            with connection:
                while data := connection.recv(65536):
                    connection.sendall(data)

        threading.Thread(target=serve_echo, daemon=True).start()
        config = tmp_path / "bridge.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                listen:
                  - address: systemd:grpc
                routes:
                  echo:
                    unix: {echo_path}
                """
            )
        )
        activate = subprocess.Popen(
            [
                "systemd-socket-activate", "-l", str(grpc_path), "--fdname=grpc",
                str(extracted / "usr/bin/jmp-bridge"), "serve", "--config", str(config),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            line = activate.stdout.readline()  # "Listening on ..." once the socket exists
            assert "Listening on" in line, line
            import grpc  # the interop tests' venv has it

            def frame(payload: bytes = b"", frame_type: int = 0) -> bytes:
                out = b""
                if payload:
                    out += b"\x0a" + bytes([len(payload)]) + payload
                if frame_type:
                    out += b"\x10" + bytes([frame_type])
                return out

            with grpc.insecure_channel(f"unix:{grpc_path}") as channel:
                stream = channel.stream_stream(
                    "/jumpstarter.v1.RouterService/Stream",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                responses = list(stream(iter([frame(b"hello"), frame(frame_type=7)]), timeout=20))
            payload = b"".join(r[2 : 2 + r[1]] for r in responses if r[:1] == b"\x0a")
            assert payload == b"hello", responses
        finally:
            activate.send_signal(signal.SIGTERM)
            output = activate.communicate(timeout=60)[0]
        assert activate.returncode == 0, output
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# RPM


@pytest.fixture(scope="module")
def rpm(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("rpm")
    run(
        "make", "-s", "rpm", f"BINARY={BINARY}", f"DISTDIR={dist}",
        'RPMBUILD_FLAGS=--define "_binary_payload w1.gzdio"',
    )  # fmt: skip
    rpms = list(dist.glob("*.rpm"))
    assert len(rpms) == 1, rpms
    return rpms[0]


def test_rpm_contents(rpm):
    files = run("rpm", "-qlp", rpm).stdout.split()
    expected = [
        "/usr/bin/jmp-bridge",
        "/etc/jmp-bridge/bridge.yaml",
        "/usr/lib/sysusers.d/jmp-bridge.conf",
        "/usr/lib/tmpfiles.d/jmp-bridge.conf",
        "/usr/share/bash-completion/completions/jmp-bridge",
        "/usr/share/fish/vendor_completions.d/jmp-bridge.fish",
        "/usr/share/zsh/site-functions/_jmp-bridge",
    ] + [f"/usr/lib/systemd/system/{unit}" for unit in UNITS]
    missing = [path for path in expected if path not in files]
    assert not missing, f"not in the .rpm: {missing}\n{files}"
    assert any(re.fullmatch(r"/usr/share/man/man8/jmp-bridge\.8(\.gz)?", f) for f in files), files
    assert any(re.fullmatch(r"/usr/share/man/man5/jmp-bridge\.yaml\.5(\.gz)?", f) for f in files), files
    assert run("rpm", "-qpc", rpm).stdout.split() == ["/etc/jmp-bridge/bridge.yaml"]
    version = run("rpm", "-qp", "--qf", "%{NAME} %{VERSION}", rpm).stdout
    assert version == f"jmp-bridge {binary_version()}"
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "systemd-sysusers" in scripts and "systemd-tmpfiles --create" in scripts
    assert "try-restart jmp-bridge.service" in scripts


# --------------------------------------------------------------------------------------------
# Versions and the release build


def test_versions_agree():
    version = binary_version()
    assert re.search(rf'static let version = "{re.escape(version)}"', (REPO / "Sources/jmp-bridge/BuildInfo.swift").read_text())
    assert deb_version().rsplit("-", 1)[0] == version
    spec = (REPO / "packaging/rpm/jmp-bridge.spec").read_text()
    assert re.search(rf"^%{{!\?jmp_version: %global jmp_version {re.escape(version)}}}$", spec, re.M)
    assert re.search(rf"^\* .* - {re.escape(version)}-1$", spec, re.M)


def test_make_deb_and_rpm_default_to_a_static_release_build():
    for target in ("deb", "rpm"):
        plan = run("make", "-n", target).stdout
        assert "swift build -c release --static-swift-stdlib" in plan, plan
        assert ".build/release/jmp-bridge" in plan
        # Packed relative relocations (by lld) keep 2.9 MB of RELA records out of every start:
        # without them the idle bridge is over its 25 MiB budget (Makefile, README Performance).
        assert "-fuse-ld=lld" in plan and "-z -Xlinker pack-relative-relocs" in plan, plan
        # Without exported symbols the symbol tables are 20 KB, not 3.3 MB (2.5 MiB of RSS).
        assert "--no-export-dynamic" in plan, plan


def test_packaged_binary_is_linked_as_the_makefile_says():
    assert os.access(PACKAGED_BINARY, os.X_OK), (
        f"no packaged binary at {PACKAGED_BINARY}: run `make static-release` (scripts/test does)"
    )
    dynamic = run("readelf", "--dynamic", "--wide", PACKAGED_BINARY).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+?)\]", dynamic)
    assert needed and not [lib for lib in needed if "swift" in lib or "dispatch" in lib], needed
    assert re.search(r"\(RELR\)", dynamic), "no DT_RELR: relative relocations are not packed"
    assert re.search(r"\(FLAGS\).*\bBIND_NOW\b", dynamic) or re.search(r"\(FLAGS_1\).*\bNOW\b", dynamic), dynamic
    headers = run("readelf", "--program-headers", "--wide", PACKAGED_BINARY).stdout
    assert "GNU_RELRO" in headers, headers
    # Defined dynamic symbols: only what the linker itself puts there (_init, _end, ...), no Swift.
    symbols = run("readelf", "--dyn-syms", "--wide", PACKAGED_BINARY).stdout
    entries = [line.split() for line in symbols.splitlines() if re.match(r"\s*\d+:", line)]
    defined = [fields[7] for fields in entries if len(fields) >= 8 and fields[6] != "UND"]
    swift = [name for name in defined if name.startswith(("$s", "_$s", "swift_"))]
    assert not swift and len(defined) < 50, f"{len(defined)} exported symbols, e.g. {(swift or defined)[:5]}"
    run(PACKAGED_BINARY, "--version")
