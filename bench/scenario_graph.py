"""Scenario "graph": end to end through Microsoft Graph.

16 SMTP clients send 4 KB messages from 20 sender mailboxes (message i from
sender i mod 20) into the relay, which delivers each through Graph's sendMail
to bench/graph_h2 (mb-bench-graph): a fast fake of Entra ID's token endpoint
and Graph over TLS and HTTP/2, answering 202 at once or after 100 ms. The
relay runs as in production but with pacing off (max_per_minute_per_mailbox
0, 4 requests in flight per mailbox, 80 in all), wait_for_delivery 0, the
spool durable and the mail log on. The fake is first measured alone with
nghttp2's h2load (the same POST, one connection, 64 streams), to show that
it is not the bottleneck.

The fake runs nghttp2's server with its defaults, whose rapid-reset guard
ends a connection after about 1,000 streams that libcurl 7.88 (Debian 12)
resets when done; the relay resends the requests in flight on it at once.
The table counts those resends, the Graph connections opened and any
attempt deferred to the queue's retry.

Figures per latency: messages/s from the first connection to Graph's last
202; the delivery latency of each message from the client's final dot to
Graph's 202 (p50/p99; the fake finds the message by an X-Bench-Seq header in
the MIME it decodes; the span includes the relay's fsync before its 250); the relay's CPU seconds per 1,000 messages over the same
span. Targets (the benchmarks issue): >= 2,000 messages/s at 0 ms, >= 500 at
100 ms, <= 0.4 CPU-s per 1,000 messages.

run(binary, smoke) returns a dict; raises RuntimeError with the relay's log.
"""

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fake_graph import CLIENT, SECRET, TENANT, import_harness

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 16
SENDERS = 20
IN_FLIGHT_PER_MAILBOX = 4
HELO = "client.bench.example"


def fake_binary(binary):
    """mb-bench-graph from the build tree of `binary` (MB_BENCH_GRAPH
    overrides)."""
    if os.environ.get("MB_BENCH_GRAPH"):
        return os.environ["MB_BENCH_GRAPH"]
    build = Path(binary).resolve().parents[2]  # build/<preset>/src/cli/mailbridge
    path = build / "bench" / "graph_h2" / "mb-bench-graph"
    if not path.exists():
        raise RuntimeError(f"{path} is not built (it needs libnghttp2-dev: scripts/install-deps)")
    return str(path)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fake:
    """A running mb-bench-graph. Progress lines ("accepted N NS") are read by
    a thread; wait_accepted() blocks until N 202s have been answered."""

    def __init__(self, exe, ca, latency_ms, workdir):
        self.record = workdir / f"record-{latency_ms}-{time.monotonic_ns()}.txt"
        self.errors = workdir / f"fake-{latency_ms}-{time.monotonic_ns()}.log"
        with open(self.errors, "w") as errors:
            self.proc = subprocess.Popen([exe, "--cert", str(ca.cert_file), "--key", str(ca.key_file),
                                          "--latency-ms", str(latency_ms), "--record", str(self.record)],
                                         stdout=subprocess.PIPE, stderr=errors, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"mb-bench-graph did not start: {line!r} {self.errors.read_text()!r}")
        self.port = int(m.group(1))
        self.url = f"https://127.0.0.1:{self.port}"
        self.accepted = 0
        self.summary = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        import json
        for line in self.proc.stdout:
            with self._cond:
                if line.startswith("accepted "):
                    self.accepted = int(line.split()[1])
                elif line.startswith("{"):
                    self.summary = json.loads(line)
                self._cond.notify_all()

    def wait_accepted(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.accepted < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def stop(self):
        """Ends the fake; returns (summary, {seq: ns of its 202})."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self._thread.join(timeout=30)
        times = {}
        if self.record.exists():
            for line in self.record.read_text().splitlines():
                seq, ns = line.split()
                times[int(seq)] = int(ns)
        return self.summary, times


def measure_fake_alone(exe, ca, workdir, requests):
    """h2load against the fake: requests/s and the fake's CPU per 1,000."""
    if not shutil.which("h2load"):
        raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
    import base64
    body = workdir / "sendmail-body.txt"
    mime = (b"From: s0@contoso.example\r\nTo: a@example.com\r\nSubject: alone\r\nX-Bench-Seq: 1\r\n\r\n" +
            (b"x" * 78 + b"\r\n") * 52)
    body.write_bytes(base64.b64encode(mime))
    fake = Fake(exe, ca, 0, workdir)
    try:
        cpu0 = cpu_seconds(fake.proc.pid)
        res = subprocess.run(["h2load", "-n", str(requests), "-c", "1", "-m", "64", "-d", str(body),
                              "-H", "content-type: text/plain", "-H", "authorization: Bearer x",
                              f"{fake.url}/v1.0/users/s0%40contoso.example/sendMail"],
                             capture_output=True, text=True, timeout=300)
        cpu = cpu_seconds(fake.proc.pid) - cpu0
    finally:
        summary, _ = fake.stop()
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", res.stdout)
    codes = re.search(r"status codes: (\d+) 2xx", res.stdout)
    if res.returncode != 0 or not m or not codes or int(codes.group(1)) != requests:
        raise RuntimeError(f"h2load failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return {"requests": requests, "requests_per_second": float(m.group(3)),
            "cpu_per_1000": cpu / requests * 1000, "accepted": summary["accepted"] if summary else None}


def message(seq, sender, body):
    return (f"From: <{sender}>\r\nTo: <rcpt{seq % 7}@example.net>\r\nSubject: bench {seq}\r\n"
            f"Message-Id: <{seq}.{time.monotonic_ns()}@{HELO}>\r\nX-Bench-Seq: {seq}\r\n\r\n").encode() + body


async def _client(port, seqs, senders, body, dot_at):
    """One SMTP session sending the messages numbered in seqs (PIPELINING:
    MAIL, RCPT and DATA in one write)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line:
                raise ConnectionError("closed by the relay")
            if line[3:4] != b"-":
                return int(line[:3]), line

    async def expect(code, what):
        got, line = await reply()
        if got != code:
            raise RuntimeError(f"{what}: {line!r}")

    await expect(220, "greeting")
    writer.write(f"EHLO {HELO}\r\n".encode())
    await expect(250, "EHLO")
    for seq in seqs:
        sender = senders[seq % len(senders)]
        writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<rcpt{seq % 7}@example.net>\r\nDATA\r\n".encode())
        await expect(250, "MAIL")
        await expect(250, "RCPT")
        await expect(354, "DATA")
        content = message(seq, sender, body) + b".\r\n"
        sent_at = time.monotonic_ns()
        writer.write(content)
        await expect(250, "end of data")
        dot_at[seq] = sent_at
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


def send(port, first, count, senders, dot_at):
    body = b"".join(b"%d" % (i % 10) + b"x" * 77 + b"\r\n" for i in range(52))  # about 4 KB
    seqs = list(range(first, first + count))

    async def main():
        await asyncio.gather(*(_client(port, seqs[i::CLIENTS], senders, body, dot_at) for i in range(CLIENTS)))

    asyncio.run(main())


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def run_latency(harness, exe, ca, workdir, latency_ms, messages, warmup):
    senders = [f"s{i}@contoso.example" for i in range(SENDERS)]
    fake = Fake(exe, ca, latency_ms, workdir)
    relay = None
    try:
        provider = {"name": "m365", "type": "graph", "tenant_id": TENANT, "client_id": CLIENT,
                    "client_secret": SECRET, "login_endpoint": fake.url, "graph_endpoint": fake.url,
                    "ca_file": str(ca.ca_file)}
        relay = harness.Relay(workdir=tempfile.mkdtemp(prefix="relay-", dir=workdir), providers=[provider],
                              smtp={"wait_for_delivery": "0s", "max_connections": 100},
                              queue={"max_in_flight": SENDERS * IN_FLIGHT_PER_MAILBOX,
                                     "max_in_flight_per_mailbox": IN_FLIGHT_PER_MAILBOX,
                                     "max_per_minute_per_mailbox": 0},
                              admin={"address": "off"}, logging={"level": "info", "format": "text"})
        relay.start()
        dot_at = {}
        # Warm-up: the token, Graph's connection, the relay's threads.
        send(relay.port, 0, warmup, senders, dot_at)
        if not fake.wait_accepted(warmup, 120):
            raise RuntimeError(f"warm-up: Graph saw {fake.accepted} of {warmup} messages")
        pid = relay.proc.pid
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic_ns()
        send(relay.port, warmup, messages, senders, dot_at)
        accepted_s = (time.monotonic_ns() - t0) / 1e9
        if not fake.wait_accepted(warmup + messages, 300):
            raise RuntimeError(f"Graph saw {fake.accepted - warmup} of {messages} messages")
        cpu = cpu_seconds(pid) - cpu0
        log = relay.log()
        resent = log.count("the connection broke")
        deferred = log.count("recipient(s) deferred")
        relay.stop()
        summary, times = fake.stop()
        if summary is None or summary["accepted"] != warmup + messages:
            raise RuntimeError(f"the fake answered {summary and summary['accepted']} 202s, "
                               f"expected {warmup + messages}")
        seconds = (summary["last_accepted_ns"] - t0) / 1e9
        latencies = [(times[s] - dot_at[s]) / 1e6 for s in range(warmup, warmup + messages)
                     if s in times and s in dot_at]
        if len(latencies) != messages:
            missing = [s for s in range(warmup, warmup + messages) if s not in times or s not in dot_at][:10]
            raise RuntimeError(f"only {len(latencies)} of {messages} messages were matched at the fake "
                               f"(first missing: {missing}; {fake.errors.read_text()[-2000:]})")
        return {"latency_ms": latency_ms, "messages": messages, "messages_per_second": messages / seconds,
                "accept_rate": messages / accepted_s, "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99), "cpu_per_1000": cpu / messages * 1000,
                "graph_requests": summary["requests"], "tokens": summary["tokens"],
                "graph_connections": summary["connections"], "resent_at_once": resent,
                "deferred_attempts": deferred}
    except Exception as e:
        log = relay.log() if relay else ""
        raise RuntimeError("%s\n--- relay log:\n%s" % (e, log[-20000:])) from e
    finally:
        if relay:
            if relay.proc is not None:
                relay.stop()
            relay.cleanup()
        if fake.proc.poll() is None:
            fake.stop()


def _median(runs, key):
    vals = sorted(r[key] for r in runs)
    return vals[len(vals) // 2]


def run(binary, smoke=False):
    harness = import_harness(binary)
    from test_ca import TestCA
    exe = fake_binary(binary)
    workdir = Path(tempfile.mkdtemp(prefix="mb-bench-graph-"))
    ca = TestCA()
    try:
        alone = measure_fake_alone(exe, ca, workdir, 2000 if smoke else 40000)
        out = {"fake_alone_requests_per_second": alone["requests_per_second"],
               "fake_alone_cpu_per_1000": alone["cpu_per_1000"]}
        plan = [(0, 200 if smoke else 10000), (100, 200 if smoke else 5000)]
        runs = 1 if smoke else 3
        for latency_ms, messages in plan:
            results = [run_latency(harness, exe, ca, workdir, latency_ms, messages, 40 if smoke else 500)
                       for _ in range(runs)]
            tag = f"{latency_ms}ms"
            out[f"runs_{tag}"] = results
            for key in ("messages_per_second", "p50_ms", "p99_ms", "cpu_per_1000", "accept_rate"):
                out[f"{key}_{tag}"] = _median(results, key)
            for key in ("graph_connections", "resent_at_once", "deferred_attempts"):
                out[f"{key}_{tag}"] = sum(r[key] for r in results)
            out[f"messages_{tag}"] = messages
        out["runs"] = runs
        return out
    finally:
        ca.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    import json
    binary = os.environ.get("MB_BIN") or str(ROOT / "build" / "release" / "src" / "cli" / "mailbridge")
    print(json.dumps(run(binary, smoke="--smoke" in sys.argv), indent=2))
