# Convenience targets; the scripts in scripts/ do the work.
.PHONY: all build release demo test setup protos clean

all: build

setup:
	scripts/setup

build:
	swift build

release:
	swift build -c release

demo:
	scripts/demo

test:
	scripts/test

protos:
	scripts/generate-protos

clean:
	rm -rf .build .venv $(DISTDIR)

.PHONY: bench soak
bench:
	scripts/bench

# Not run in CI: 30 minutes of mixed load by default (SOAK_MINUTES=2 make soak for a short run).
soak:
	scripts/soak

# ---------------------------------------------------------------------------------------------
# Installing and packaging.
#
#   make install [DESTDIR=/tmp/stage] [PREFIX=/usr/local] [BINARY=path/to/jmp-bridge]
#   make uninstall [same variables]
#   make deb | make rpm [BINARY=...]     -> dist/jmp-bridge_VERSION-REV_ARCH.deb, dist/jmp-bridge-VERSION-REL.ARCH.rpm
#
# Without BINARY, a release binary with the Swift runtime linked in statically is built first, so
# the result needs nothing from the Swift toolchain. Packages use PREFIX=/usr; the configuration
# always lives in $(SYSCONFDIR)/jmp-bridge (/etc/jmp-bridge), where the binary looks for it.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/jmp-bridge
SYSCONFDIR ?= /etc
# systemd looks for units, sysusers.d and tmpfiles.d under /usr/local/lib as well as /usr/lib.
# For /usr, ask systemd where its distribution puts them (/lib/systemd/system on Debian 12).
ifeq ($(PREFIX),/usr)
systemd_variable = $(or $(shell pkg-config --variable=$(1) systemd 2>/dev/null),$(2))
UNITDIR ?= $(call systemd_variable,systemdsystemunitdir,/usr/lib/systemd/system)
SYSUSERSDIR ?= $(call systemd_variable,sysusersdir,/usr/lib/sysusers.d)
TMPFILESDIR ?= $(call systemd_variable,tmpfilesdir,/usr/lib/tmpfiles.d)
ZSHCOMPDIR ?= $(DATADIR)/zsh/vendor-completions
else
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
endif
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d

DISTDIR ?= dist
# Extra rpmbuild options, e.g. RPMBUILD_FLAGS='--define "_binary_payload w1.gzdio"' for speed.
RPMBUILD_FLAGS ?=
# The Swift runtime linked in statically; full RELRO, as Debian's hardening flags ask. Linked by
# the toolchain's lld with packed relative relocations (DT_RELR, glibc >= 2.36): the position-
# independent binary has about 120,000 of them, 2.9 MB as classic RELA entries that every start
# reads into memory (a tenth of the idle RSS), 24 KB as DT_RELR. gold, swiftc's default, cannot.
# --no-export-dynamic undoes the -export-dynamic of the toolchain's static-stdlib-args.lnk: nothing
# loads plugins or looks symbols up by name, and 3.3 MB of dynamic symbol tables (2.5 MiB of idle
# RSS) shrink to 20 KB. Crash backtraces still have names: the runtime reads .symtab, not these.
RELEASE_FLAGS = -c release --static-swift-stdlib -Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now \
    -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld -Xlinker -z -Xlinker pack-relative-relocs \
    -Xlinker --no-export-dynamic
# The release binary (built on demand) unless BINARY names one.
BINARY ?=
ifeq ($(strip $(BINARY)),)
override BINARY := .build/release/jmp-bridge
BINARY_PREREQ := static-release
endif

UNITS := $(wildcard packaging/systemd/*.service packaging/systemd/*.socket)
MANPAGES := $(wildcard man/*.[1-8])
VERSION = $(shell sed -n 's/.*static let version = "\(.*\)".*/\1/p' Sources/jmp-bridge/BuildInfo.swift)

.PHONY: static-release install uninstall deb rpm

static-release:
	swift build $(RELEASE_FLAGS) --product jmp-bridge

install: $(BINARY_PREREQ)
	@test -x "$(BINARY)" || { echo "make install: no executable binary at $(BINARY)" >&2; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSUSERSDIR)" \
	    "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(SYSCONFDIR)/jmp-bridge" "$(DESTDIR)$(DOCDIR)" \
	    "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)"
	install -m 0755 "$(BINARY)" "$(DESTDIR)$(BINDIR)/jmp-bridge"
	@# The units name /usr/bin and /etc; point them at where this install puts things.
	for unit in $(UNITS); do \
	    sed -e 's|/usr/bin/jmp-bridge|$(BINDIR)/jmp-bridge|g' -e 's|/etc/jmp-bridge/|$(SYSCONFDIR)/jmp-bridge/|g' \
	        "$$unit" >"$(DESTDIR)$(UNITDIR)/$${unit##*/}" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$${unit##*/}" || exit 1; \
	done
	install -m 0644 packaging/sysusers.d/jmp-bridge.conf "$(DESTDIR)$(SYSUSERSDIR)/jmp-bridge.conf"
	install -m 0644 packaging/tmpfiles.d/jmp-bridge.conf "$(DESTDIR)$(TMPFILESDIR)/jmp-bridge.conf"
	for page in $(MANPAGES); do \
	    install -D -m 0644 "$$page" "$(DESTDIR)$(MANDIR)/man$${page##*.}/$${page##*/}" || exit 1; \
	done
	@# An existing configuration is the administrator's: never overwrite it.
	if [ -e "$(DESTDIR)$(SYSCONFDIR)/jmp-bridge/bridge.yaml" ]; then \
	    echo "make install: keeping $(DESTDIR)$(SYSCONFDIR)/jmp-bridge/bridge.yaml"; \
	else \
	    install -m 0644 packaging/examples/bridge.yaml "$(DESTDIR)$(SYSCONFDIR)/jmp-bridge/bridge.yaml"; \
	fi
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"
	install -D -m 0644 packaging/examples/bridge.yaml "$(DESTDIR)$(DOCDIR)/examples/bridge.yaml"
	install -D -m 0644 packaging/grafana/jmp-bridge.json "$(DESTDIR)$(DOCDIR)/examples/grafana-dashboard.json"
	@# Completion scripts, generated by swift-argument-parser from the binary itself (bash
	@# completions are sourced, not run: no #! line).
	"$(BINARY)" --generate-completion-script bash | sed '1{/^#!/d}' >"$(DESTDIR)$(BASHCOMPDIR)/jmp-bridge"
	"$(BINARY)" --generate-completion-script zsh >"$(DESTDIR)$(ZSHCOMPDIR)/_jmp-bridge"
	"$(BINARY)" --generate-completion-script fish >"$(DESTDIR)$(FISHCOMPDIR)/jmp-bridge.fish"
	chmod 0644 "$(DESTDIR)$(BASHCOMPDIR)/jmp-bridge" "$(DESTDIR)$(ZSHCOMPDIR)/_jmp-bridge" \
	    "$(DESTDIR)$(FISHCOMPDIR)/jmp-bridge.fish"

# Removes what install put in place, except the configuration in $(SYSCONFDIR)/jmp-bridge, and
# leaves the jmp-bridge user and group (files may still belong to them).
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/jmp-bridge"
	for unit in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$${unit##*/}"; done
	rm -f "$(DESTDIR)$(SYSUSERSDIR)/jmp-bridge.conf" "$(DESTDIR)$(TMPFILESDIR)/jmp-bridge.conf"
	for page in $(MANPAGES); do rm -f "$(DESTDIR)$(MANDIR)/man$${page##*.}/$${page##*/}"; done
	rm -f "$(DESTDIR)$(BASHCOMPDIR)/jmp-bridge" "$(DESTDIR)$(ZSHCOMPDIR)/_jmp-bridge" \
	    "$(DESTDIR)$(FISHCOMPDIR)/jmp-bridge.fish"
	rm -rf "$(DESTDIR)$(DOCDIR)"
	@echo "make uninstall: left $(DESTDIR)$(SYSCONFDIR)/jmp-bridge and the user jmp-bridge in place"

deb: $(BINARY_PREREQ)
	packaging/debian/build-deb "$(BINARY)" "$(DISTDIR)"

# rpmbuild runs make install (PREFIX=/usr) from this tree into its build root; see the spec.
rpm: $(BINARY_PREREQ)
	@test -x "$(BINARY)" || { echo "make rpm: no executable binary at $(BINARY)" >&2; exit 1; }
	mkdir -p "$(DISTDIR)"
	rm -rf "$(DISTDIR)/rpmbuild"
	rpmbuild -bb --nodeps $(RPMBUILD_FLAGS) \
	    --define "_topdir $(abspath $(DISTDIR))/rpmbuild" \
	    --define "_rpmdir $(abspath $(DISTDIR))" \
	    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	    --define "jmp_source $(CURDIR)" \
	    --define "jmp_binary $(abspath $(BINARY))" \
	    --define "jmp_version $(VERSION)" \
	    packaging/rpm/jmp-bridge.spec
	rm -rf "$(DISTDIR)/rpmbuild"
