"""Entry point: ``python -m autoglm_server`` (configuration from AUTOGLM_* variables, see README)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import uvicorn

from .app import create_app
from .config import ConfigError, Settings, load_settings

log = logging.getLogger("autoglm_server")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that SIGTERM/SIGINT first drains: /health/ready turns 503, new generation requests
    get 503, in-flight requests finish (up to drain_timeout seconds), then the server exits with status 0."""

    def __init__(self, config: uvicorn.Config, app: object, settings: Settings) -> None:
        super().__init__(config)
        self._app = app
        self._settings = settings
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            if sig == signal.SIGINT:  # a second Ctrl-C: stop waiting
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        log.info("signal %s: draining (up to %ss)", signal.Signals(sig).name, self._settings.drain_timeout)
        self._app.state.engine.start_drain()  # type: ignore[attr-defined]
        threading.Thread(target=self._wait_then_exit, name="autoglm-drain", daemon=True).start()

    def _wait_then_exit(self) -> None:
        state = self._app.state  # type: ignore[attr-defined]
        deadline = time.monotonic() + self._settings.drain_timeout
        while time.monotonic() < deadline:
            if state.engine.idle and state.active == 0:
                log.info("drained: no requests in flight")
                break
            time.sleep(0.05)
        else:
            log.warning("drain timeout (%ss) reached with requests in flight", self._settings.drain_timeout)
        self.should_exit = True


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"autoglm-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        access_log=settings.log_level in ("debug", "trace"),
    )
    DrainingServer(config, app, settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
