"""Scenario "throttled": a burst to one mailbox against Graph's limits.

The fake Microsoft Graph (tests/fakes, over TLS) enforces what Exchange
Online enforces per mailbox: 4 concurrent requests and 30 messages a minute,
answering 429 with Retry-After beyond. A burst of N messages from one sender
is accepted by the relay (wait_for_delivery 0) and then drained at the pace
the relay chooses (queue.max_in_flight_per_mailbox 4,
max_per_minute_per_mailbox as the fake's limit).

Figures: the time from the first message accepted to the last one sent; the
theoretical minimum for that many messages at the per-minute limit (the
first `limit` go at once, every further `limit` a minute later:
ceil(N / limit - 1) minutes); the rate reached as a share of the allowed one;
and the share of Graph requests answered 429.

Targets (the benchmarks issue): >= 95 % of the allowed rate, <= 1 % 429s.
The full run sends 300 messages at 30 a minute: about 9 minutes. The smoke
run sends 40 at 600 a minute.

run(binary, smoke) returns a dict of figures, or raises RuntimeError with the
relay's log.
"""

import math
import os
import sys
import time
from pathlib import Path

from fake_graph import SENDER, FakeGraph, import_harness

ROOT = Path(__file__).resolve().parents[1]


def run(binary, smoke=False, count=None, per_minute=None):
    harness = import_harness(binary)
    count = count or (40 if smoke else 300)
    per_minute = per_minute or (600 if smoke else 30)
    sender = SENDER
    graph = FakeGraph()
    fake, provider = graph.fake, graph.provider
    relay = None
    try:
        fake.set_concurrency_limit(4)
        fake.set_rate_limit(per_minute)
        relay = harness.Relay(providers=[provider], smtp={"wait_for_delivery": "0s"},
                              queue={"max_in_flight": 16, "max_in_flight_per_mailbox": 4,
                                     "max_per_minute_per_mailbox": per_minute,
                                     "retry_delay": "5s", "max_retry_delay": "60s"},
                              admin={"address": "off"}, logging={"level": "info", "format": "text"})
        relay.start()
        body = b"From: " + sender.encode() + b"\r\nTo: a@example.com\r\nSubject: burst\r\n\r\n" + (b"x" * 78 + b"\r\n") * 50
        started = time.monotonic()
        for i in range(count):
            code, text = harness.send_message(relay.port, sender, ["a@example.com"], body)
            if code != 250:
                raise RuntimeError("message %d refused: %d %s" % (i, code, text))
        accepted = time.monotonic() - started
        minimum = max(0.0, math.ceil(count / per_minute - 1)) * 60.0
        fake.wait_sent(count, timeout=minimum + 300)
        drained = time.monotonic() - started
        sends = [e for e in fake.requests if e.method == "POST" and "sendMail" in e.path]
        throttled = sum(1 for e in sends if e.status == 429)
        return {"messages": count, "per_minute": per_minute, "accept_seconds": accepted,
                "drain_seconds": drained, "minimum_seconds": minimum,
                "share_of_allowed_rate": min(1.0, minimum / drained) if minimum > 0 else None,
                "graph_requests": len(sends), "throttled_429": throttled,
                "throttled_share": throttled / len(sends) if sends else 0.0}
    except Exception as e:
        log = relay.log() if relay else ""
        raise RuntimeError("%s\n--- relay log:\n%s" % (e, log[-20000:])) from e
    finally:
        if relay:
            relay.stop()
            relay.cleanup()
        graph.close()


if __name__ == "__main__":
    import json
    binary = os.environ.get("MB_BIN") or str(ROOT / "build" / "release" / "src" / "cli" / "mailbridge")
    print(json.dumps(run(binary, smoke="--smoke" in sys.argv), indent=2))
