"""What the Frontend and Factory daemons share: logging, the cycle loop, clean shutdown.

A daemon is a ``cycle()`` function run every ``loop_delay`` seconds (upstream's loop: work, then sleep
the rest of the delay, no sleep if late).  SIGTERM/SIGINT end the loop between cycles and run the
daemon's ``shutdown()`` (deadvertise), as upstream's daemons do on exit.  A cycle that raises is logged
with its traceback and the loop goes on: one bad cycle must not stop provisioning.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Callable

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def setup_logging(name: str, debug: bool = False) -> logging.Logger:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    return logging.getLogger(name)


def run_loop(cycle: Callable[[], None], loop_delay: float, shutdown: Callable[[], None],
             log: logging.Logger, max_cycles: int | None = None) -> None:
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %s received, stopping after this cycle", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    done = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            cycle()
        except Exception:  # noqa: BLE001 - logged with traceback; the next cycle may well succeed
            log.exception("cycle failed")
        done += 1
        if max_cycles is not None and done >= max_cycles:
            break
        stop.wait(max(0.0, loop_delay - (time.monotonic() - started)))
    try:
        shutdown()
    except Exception:  # noqa: BLE001
        log.exception("shutdown failed")
