"""Runs a stock jumpstarter 0.9.0 exporter from its YAML, as ``jmp run --exporter-config FILE``.

The ``jmp`` command (package jumpstarter-cli) is not installed in the test venv, so this is its
controller-mode child reduced to what matters here (jumpstarter-dev/jumpstarter
``python/packages/jumpstarter-cli/jumpstarter_cli/run.py:_handle_child``, without the fork and
restart loop of ``_serve_with_exc_handling``): load the file with
``ExporterConfigV1Alpha1.load_path``, ``async with config.create_exporter() as exporter:
await exporter.serve()``, and on SIGINT/SIGTERM/SIGHUP/SIGQUIT call
``exporter.stop(wait_for_lease_exit=<SIGHUP>, should_unregister=True)``; the exit status is
128+signal after a signal, as ``jmp run``'s. Logging goes to stderr at INFO.

    python run_exporter.py EXPORTER_YAML
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import anyio
from anyio import create_task_group, open_signal_receiver
from jumpstarter.config.exporter import ExporterConfigV1Alpha1


async def serve(config: ExporterConfigV1Alpha1) -> int:
    received = 0
    exporter = None

    async def on_signals():
        nonlocal received
        with open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT) as signals:
            async for sig in signals:
                logging.info("received %s", signal.Signals(sig).name)
                received = sig
                if exporter is not None:
                    exporter.stop(wait_for_lease_exit=sig == signal.SIGHUP, should_unregister=True)
                else:  # still starting: nothing to unregister yet
                    tg.cancel_scope.cancel()

    exit_code = None
    async with create_task_group() as tg:
        tg.start_soon(on_signals)
        async with config.create_exporter() as exporter:
            await exporter.serve()
            exit_code = exporter.exit_code
        tg.cancel_scope.cancel()
    if received:
        return 128 + received
    return exit_code if exit_code is not None else 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ExporterConfigV1Alpha1.load_path(Path(sys.argv[1]))
    return anyio.run(serve, config)


if __name__ == "__main__":
    sys.exit(main())
