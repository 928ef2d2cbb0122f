"""What every fake server under tests/fakes/ shares, whatever it speaks:

- FakeBase: the test CA (made and removed by the fake unless the test
  passes one in), one lock with a condition variable for all of a fake's
  state, snapshots of its records, waiting for a record or a condition, and
  use as a context manager (start() on entry, stop() on exit).
- run_until_interrupted(): the loop of a fake's command line main().

https_fake.py builds the HTTPS fakes on it; fake_smtp_server.py uses it
directly.
"""

import signal
import threading
import time

try:
    from .test_ca import TestCA
except ImportError:
    from test_ca import TestCA


class FakeBase:
    """The base of a fake server. Subclasses provide start() (returning
    self) and stop(), and call _release_ca() when they stop.

    ca: a TestCA to use (the test owns it), or None for one of the fake's
    own (tls=False: none at all)."""

    def __init__(self, ca=None, tls=True):
        self._own_ca = ca is None and tls
        self.ca = ca if ca is not None else (TestCA() if tls else None)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def ca_file(self):
        """The CA certificate (PEM) a client must trust; None without TLS."""
        return str(self.ca.ca_file) if self.ca is not None else None

    def _release_ca(self):
        """Removes the fake's own CA (once); a CA the test passed in stays."""
        if self._own_ca and self.ca is not None:
            self.ca.cleanup()
            self._own_ca = False

    # ---- records and waiting -------------------------------------------

    def _snapshot(self, records, make=list):
        """make(records), taken under the lock: a copy of a record list (or
        dict, or dict view) the server threads keep adding to."""
        with self._lock:
            return make(records)

    def wait_for(self, predicate, timeout=10, what="condition"):
        """Waits until predicate() (called under the lock) is true; returns
        its value. Raises TimeoutError(what) otherwise (`what` may be a
        function giving the text)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what() if callable(what) else what)
                self._cond.wait(left)

    def _wait_count(self, records, n, timeout, noun):
        """Waits until records() (called under the lock) holds at least `n`
        items; returns a copy of them. Raises TimeoutError("expected N
        <noun>, have M") otherwise."""
        with self._cond:
            self.wait_for(lambda: len(records()) >= n, timeout,
                          lambda: "expected %d %s, have %d" % (n, noun, len(records())))
            return list(records())


def run_until_interrupted(feeds, interval=1.0):
    """The loop of a fake's main(): until Ctrl-C (or SIGTERM), prints each
    new record as it comes. `feeds`: (records, line) pairs; records() gives
    the record list so far, line(record) the text printed for a new one.
    Returns on the interrupt (the caller stops the fake)."""
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    seen = [0] * len(feeds)
    try:
        while True:
            time.sleep(interval)
            for i, (records, line) in enumerate(feeds):
                items = records()
                for record in items[seen[i]:]:
                    print(line(record), flush=True)
                seen[i] = len(items)
    except KeyboardInterrupt:
        pass
