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
	rm -rf .build .venv

.PHONY: bench
bench:
	scripts/bench
