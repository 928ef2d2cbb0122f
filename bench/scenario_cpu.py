"""Scenario "cpu": instructions per message, counted rather than timed.

The relay runs under valgrind's callgrind (instruction counts only, no cache
simulation) twice on the same configuration (outbox provider,
wait_for_delivery 0): once started and stopped without mail, once with N 4 KB
messages sent one after another over one SMTP connection and delivered to the
outbox. The difference, divided by N, is the relay's cost of one message from
connection to delivery, in instructions: a figure that a noisy machine does
not move, so that a regression shows between two runs of `make bench`. The
same twice more with the mail log off gives the tracker's own cost.

Needs valgrind (Debian package valgrind). run(binary, smoke) returns a dict;
raises RuntimeError with the relay's log when a run fails.
"""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) ")


def _config(state, outbox, tracker):
    return {
        "server": {"hostname": "bench.test", "state_dir": str(state)},
        "listeners": [{"name": "bench", "address": "127.0.0.1:0", "tls": "none", "auth": "none"}],
        "smtp": {"wait_for_delivery": "0s"},
        # One sender: without this, pacing (30 a minute per mailbox) would
        # stretch the run to minutes of idle waiting.
        "queue": {"max_per_minute_per_mailbox": 0, "max_in_flight_per_mailbox": 100},
        "providers": [{"name": "outbox", "type": "outbox", "directory": str(outbox)}],
        "admin": {"address": "off"},
        "tracker": {"retention_days": 30 if tracker else -1},
        "logging": {"level": "info", "format": "text"},
    }


def _message(i):
    return (b"From: scanner@example.com\r\nTo: alice@example.com\r\nSubject: page %d\r\n\r\n" % i +
            (b"0123456789" * 7 + b"\r\n") * 56)  # about 4 KB


def _instructions(binary, messages, workdir, tracker=True):
    import json
    tag = "%d-%s" % (messages, "on" if tracker else "off")
    state, outbox = workdir / ("state" + tag), workdir / ("outbox" + tag)
    config = workdir / ("c%s.yaml" % tag)
    config.write_text(json.dumps(_config(state, outbox, tracker)))
    out = workdir / ("callgrind.%s.out" % tag)
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + str(out),
                             "--cache-sim=no", "--branch-sim=no", binary, "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    log = []
    port = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("the relay ended before it was ready")
            log.append(line)
            m = LISTEN_RE.search(line)
            if m:
                port = int(m.group(1))
            if line.rstrip().endswith(" ready"):
                break
        else:
            raise RuntimeError("the relay was not ready within 120 s under valgrind")
        if messages:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
                for i in range(messages):
                    s.sendmail("scanner@example.com", ["alice@example.com"], _message(i))
            deadline = time.monotonic() + 300
            while len(list(outbox.glob("*.eml"))) < messages and time.monotonic() < deadline:
                time.sleep(0.2)
            if len(list(outbox.glob("*.eml"))) < messages:
                raise RuntimeError("only %d of %d messages reached the outbox" % (len(list(outbox.glob("*.eml"))),
                                                                                messages))
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=300)
        log.append(rest)
        if proc.returncode != 0:
            raise RuntimeError("the relay exited with %d" % proc.returncode)
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
        raise RuntimeError("no instruction total in " + str(out))
    except Exception as e:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise RuntimeError("%s\n--- relay log:\n%s" % (e, "".join(log)[-20000:])) from e


def run(binary, smoke=False):
    if not shutil.which("valgrind"):
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    messages = 10 if smoke else 200
    workdir = Path(tempfile.mkdtemp(prefix="mb-bench-cpu-"))
    try:
        base = _instructions(binary, 0, workdir)
        loaded = _instructions(binary, messages, workdir)
        base_off = _instructions(binary, 0, workdir, tracker=False)
        loaded_off = _instructions(binary, messages, workdir, tracker=False)
        per = (loaded - base) / messages
        per_off = (loaded_off - base_off) / messages
        return {"messages": messages, "baseline_instructions": base, "loaded_instructions": loaded,
                "instructions_per_message": per, "instructions_per_message_tracker_off": per_off,
                "tracker_on_vs_off_instructions": per / per_off if per_off > 0 else None}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    import json
    binary = os.environ.get("MB_BIN") or str(ROOT / "build" / "release" / "src" / "cli" / "mailbridge")
    print(json.dumps(run(binary, smoke="--smoke" in sys.argv), indent=2))
