"""A stand-in for `wandb launch-agent` that plays a script of the real agent's lines.

Run as a real child of launch-watchdog: `python agent.py SCRIPT.json [agent args...]`. The script
is a JSON object:

    steps        list of actions, in order:
                   {"err": TEXT} / {"out": TEXT}        write to stderr / stdout and flush
                   {"err_bytes": HEX} / {"out_bytes": HEX}  raw bytes
                   {"repeat": TEXT, "times": N, "stream": "out"|"err"}  the same text N times
                   {"log": NAME, "text": TEXT}          append to $WANDB_DIR/wandb/NAME
                   {"truncate": PATH}                   truncate a file to zero length
                   {"sleep": SECONDS}
                   {"grandchild": PIDFILE}              start a process that ignores SIGINT/SIGTERM
                   {"exit": CODE}
    then         "poll" (default: print a status line every 0.2 s forever, like the real agent,
                 which never exits by itself) or "exit"
    on_signal    "exit" (default: like the real agent on SIGINT, print its shutdown line and exit
                 130) or "ignore" (ignore SIGINT and SIGTERM, to test escalation)
    signal_log   a file that gets one line "SIGNUM MONOTONIC_NS" per signal received
    signal_text  what to print on stderr when a signal arrives (default: the real agent's
                 shutdown line)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    script: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    signal_log = script.get("signal_log")
    ignore = script.get("on_signal", "exit") == "ignore"
    signal_text = script.get("signal_text", "wandb: launch: Shutting down, active jobs:\n")

    def on_signal(signum: int, frame: object) -> None:
        if signal_log:
            with Path(signal_log).open("a") as f:
                f.write(f"{signum} {time.clock_gettime_ns(time.CLOCK_MONOTONIC)}\n")
        if not ignore:
            sys.stderr.write(signal_text)
            sys.stderr.flush()
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    wandb_dir = Path(os.environ.get("WANDB_DIR", ".")) / "wandb"
    for step in script.get("steps", []):
        if "err" in step:
            sys.stderr.write(step["err"])
            sys.stderr.flush()
        elif "out" in step:
            sys.stdout.write(step["out"])
            sys.stdout.flush()
        elif "err_bytes" in step or "out_bytes" in step:
            fd = 2 if "err_bytes" in step else 1
            os.write(fd, bytes.fromhex(step.get("err_bytes") or step["out_bytes"]))
        elif "repeat" in step:
            stream = sys.stdout if step.get("stream", "out") == "out" else sys.stderr
            data = step["repeat"].encode()
            for _ in range(step["times"]):
                stream.buffer.write(data)
            stream.flush()
        elif "log" in step:
            wandb_dir.mkdir(parents=True, exist_ok=True)
            with (wandb_dir / step["log"]).open("a") as f:
                f.write(step["text"])
        elif "truncate" in step:
            Path(step["truncate"]).write_text("")
        elif "sleep" in step:
            time.sleep(step["sleep"])
        elif "grandchild" in step:
            code = (
                "import signal, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(600)\n"
            )
            child = subprocess.Popen([sys.executable, "-c", code])
            Path(step["grandchild"]).write_text(str(child.pid))
        elif "exit" in step:
            sys.stdout.flush()
            sys.exit(step["exit"])
    if script.get("then", "poll") == "exit":
        return
    while True:
        time.sleep(0.2)
        sys.stderr.write("wandb: launch: agent abc polling on queues q, running 0 out of a maximum of 1 jobs\n")
        sys.stderr.flush()


if __name__ == "__main__":
    main()
