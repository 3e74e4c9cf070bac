"""moto's SQS server for the local run; on SIGTERM it outlives the worker by a moment.

honcho signals every process at once on Ctrl-C; were the emulator gone first, the
worker's last poll would end in a traceback instead of a warm shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from types import FrameType

from moto.server import ThreadedMotoServer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access-log line per poll
    port = int(os.environ.get("LOCAL_SQS_PORT", "9324"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"SQS emulator (moto) listening on http://127.0.0.1:{port}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        time.sleep(2)
        server.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
