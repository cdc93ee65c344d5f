"""A stand-in for `wandb launch-agent` that plays a script of the real agent's lines.

Run as a real child of launch-watchdog: `python agent.py SCRIPT.json [agent args...]`. The script
is a JSON object:

    steps        list of actions, in order:
                   {"err": TEXT} / {"out": TEXT}        write to stderr / stdout and flush
                   {"err_bytes": HEX} / {"out_bytes": HEX}  raw bytes
                   {"repeat": TEXT, "times": N, "stream": "out"|"err"}  the same text N times
                   {"log": NAME, "text": TEXT}          append to $WANDB_DIR/wandb/NAME
                   {"write": PATH, "text": TEXT}        append to any file, creating its directory
                   {"truncate": PATH}                   truncate a file to zero length
                   {"sleep": SECONDS}
                   {"grandchild": PIDFILE}              start a process that ignores SIGINT/SIGTERM
                   {"session_child": PIDFILE}           start one that calls setsid and ignores them
                                                        too, holding the pipes (like wandb-core)
                   {"daemon": PIDFILE}                  double-fork a daemon in its own session
                                                        that ignores them (orphaned at once)
                   {"exit": CODE}
    then         "poll" (default: print the polling status line every 0.2 s forever, like the
                 real agent, which never exits by itself; the first at once when there are no
                 steps, so that an agent with nothing to do is seen polling), "exit", or "wait"
                 (say nothing more until signalled)
    on_signal    "exit" (default: like the real agent on SIGINT, print `Aborted!` and exit 1)
                 or "ignore" (ignore SIGINT and SIGTERM, to test escalation)
    signal_log   a file that gets one line "SIGNUM MONOTONIC_NS" per signal received
    signal_text  what to print on stderr when a signal arrives (default: `Aborted!`, what click
                 prints when the real agent gets SIGINT)
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

IGNORE_STOP = "import signal\nfor s in (signal.SIGINT, signal.SIGTERM):\n    signal.signal(s, signal.SIG_IGN)\n"
SESSION_CHILD = (
    "import os, sys, time\nos.setsid()\n"
    + IGNORE_STOP
    + "open(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
)
DAEMON = (
    "import os, sys, time\n"
    "if os.fork():\n    os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork():\n    os._exit(0)\n" + IGNORE_STOP + "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "os.close(1)\nos.close(2)\ntime.sleep(600)\n"
)


def _start_and_wait(code: str, pidfile: str) -> None:
    """Run `code` with the pid file as argument; return once the process it names wrote it."""
    subprocess.Popen([sys.executable, "-c", code, pidfile])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(pidfile).exists() and Path(pidfile).read_text():
            return
        time.sleep(0.01)
    raise SystemExit(f"{pidfile} was not written")


def main() -> None:
    script: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    signal_log = script.get("signal_log")
    ignore = script.get("on_signal", "exit") == "ignore"
    signal_text = script.get("signal_text", "Aborted!\n")

    def on_signal(signum: int, frame: object) -> None:
        if signal_log:
            with Path(signal_log).open("a") as f:
                f.write(f"{signum} {time.clock_gettime_ns(time.CLOCK_MONOTONIC)}\n")
        if not ignore:
            sys.stderr.write(signal_text)
            sys.stderr.flush()
            os._exit(1)

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
        elif "write" in step:
            target = Path(step["write"])
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as f:
                f.write(step["text"])
        elif "session_child" in step:
            _start_and_wait(SESSION_CHILD, step["session_child"])
        elif "daemon" in step:
            _start_and_wait(DAEMON, step["daemon"])
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
    if script.get("then") == "wait":
        while True:
            time.sleep(3600)
    if script.get("steps"):
        time.sleep(0.2)  # the status line comes a while after the last step
    while True:
        sys.stderr.write("wandb: launch: agent abc polling on queues q, running 0 out of a maximum of 1 jobs\n")
        sys.stderr.flush()
        time.sleep(0.2)


if __name__ == "__main__":
    main()
