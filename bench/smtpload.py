"""A small asyncio SMTP client for the benchmarks (stdlib only).

Two ways to drive a server:

- blast(): closed loop, like Postfix's smtp-source: `clients` sessions send
  `total` messages as fast as the server answers. Used as the load generator
  only when smtp-source is not installed (smoke mode without Postfix).
- probe(): open loop at a fixed offered rate (Poisson arrivals), timing each
  message from the final dot to the server's reply. smtp-source reports no
  latencies, so the latency figures come from here.

Why time only "final dot -> reply": that is the moment a durable relay does
its real work (fsync, rename, queue hand-over) and the delay a client waits
for its 250; connection set-up, EHLO, MAIL, RCPT and DATA are excluded. The
whole message including the final ".\\r\\n" goes out in one write (with
TCP_NODELAY), so "final dot" is the moment of that write; on loopback the
4 KB take microseconds to cross.

Messages look like smtp-source's: From/To/Date/Message-Id headers and a body
of `size` bytes in lines of 78 characters ("1XXX...", "2XXX...").

Every message that got anything but 250 is counted as a failure with its
reply; only 250s count as accepted.
"""

import asyncio
import random
import socket
import time
from email.utils import formatdate

SENDER = "from@bench.example"
RECIPIENT = "to@bench.example"
HELO = "client.bench.example"

# Per SMTP step: a server that stops answering fails the message instead of
# hanging the benchmark.
STEP_TIMEOUT = 30.0


def make_body(size):
    """`size` bytes of payload in CRLF lines, no line starting with '.'."""
    lines = []
    n = 0
    i = 1
    while n < size:
        line = (str(i) + "X" * 77)[: max(1, min(78, size - n - 2))]
        lines.append(line)
        n += len(line) + 2
        i += 1
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class Message:
    """Pre-built content; each message differs only by its Message-Id."""

    def __init__(self, size):
        self.body = make_body(size)
        self.date = formatdate(localtime=False)
        self.seq = 0

    def next(self):
        self.seq += 1
        head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nDate: {self.date}\r\n"
                f"Message-Id: <{self.seq}.{time.monotonic_ns()}@{HELO}>\r\n\r\n")
        return head.encode("ascii") + self.body + b".\r\n"


class SmtpFailure(Exception):
    def __init__(self, step, code, text):
        super().__init__(f"{step}: {code} {text.strip()}")
        self.step = step
        self.code = code


class Connection:
    """One SMTP session, no pipelining (smtp-source does not pipeline
    either), no TLS, no AUTH."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host, port):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), STEP_TIMEOUT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(reader, writer)
        try:
            await conn._expect("greeting", 220)
            await conn._command("EHLO", f"EHLO {HELO}", 250)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _reply(self):
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), STEP_TIMEOUT)
            if not line:
                raise ConnectionError("connection closed by the server")
            lines.append(line.decode("ascii", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise ConnectionError(f"not an SMTP reply: {lines[-1]!r}") from None
        return code, "".join(lines)

    async def _expect(self, step, code):
        got, text = await self._reply()
        if got != code:
            raise SmtpFailure(step, got, text)

    async def _command(self, step, line, code):
        self.writer.write(line.encode("ascii") + b"\r\n")
        await self._expect(step, code)

    async def send(self, content):
        """One transaction; returns the seconds from the final dot to the
        250. Raises SmtpFailure for any other reply."""
        await self._command("MAIL", f"MAIL FROM:<{SENDER}>", 250)
        await self._command("RCPT", f"RCPT TO:<{RECIPIENT}>", 250)
        await self._command("DATA", "DATA", 354)
        t0 = time.perf_counter()
        self.writer.write(content)
        code, text = await self._reply()
        t1 = time.perf_counter()
        if code != 250:
            raise SmtpFailure("end of data", code, text)
        return t1 - t0

    async def quit(self):
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(), 5)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.close()

    def close(self):
        self.writer.close()


class Tally:
    def __init__(self):
        self.accepted = 0
        self.latencies = []   # seconds, one per accepted message
        self.failures = {}    # "step: code" or exception name -> count
        self.first_failure = None

    def fail(self, exc):
        key = (f"{exc.step}: {exc.code}" if isinstance(exc, SmtpFailure)
               else type(exc).__name__)
        self.failures[key] = self.failures.get(key, 0) + 1
        if self.first_failure is None:
            self.first_failure = str(exc) or key

    def as_dict(self):
        return {"accepted": self.accepted, "failed": sum(self.failures.values()),
                "failures": self.failures, "first_failure": self.first_failure}


async def _blast(host, port, total, clients, reuse, size):
    msg = Message(size)
    tally = Tally()
    remaining = [total]

    async def worker():
        conn = None
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                if conn is None:
                    conn = await Connection.open(host, port)
                tally.latencies.append(await conn.send(msg.next()))
                tally.accepted += 1
                if not reuse:
                    await conn.quit()
                    conn = None
            except (OSError, ConnectionError, asyncio.TimeoutError, SmtpFailure) as exc:
                tally.fail(exc)
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            await conn.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(clients, total))))
    return tally, time.perf_counter() - t0


def blast(host, port, total, clients, reuse, size):
    """Closed loop: returns (Tally, wall seconds)."""
    return asyncio.run(_blast(host, port, total, clients, reuse, size))


async def _probe(host, port, rate, seconds, max_messages, reuse, max_connections, size, seed):
    msg = Message(size)
    tally = Tally()
    rng = random.Random(seed)
    slots = asyncio.Semaphore(max_connections)
    idle = []
    tasks = []
    waited = [0]   # arrivals that found every connection busy

    async def one():
        if slots.locked():
            waited[0] += 1
        async with slots:
            conn = idle.pop() if idle else None
            try:
                if conn is None:
                    conn = await Connection.open(host, port)
                tally.latencies.append(await conn.send(msg.next()))
                tally.accepted += 1
            except (OSError, ConnectionError, asyncio.TimeoutError, SmtpFailure) as exc:
                tally.fail(exc)
                if conn is not None:
                    conn.close()
                return
            if reuse:
                idle.append(conn)
            else:
                await conn.quit()

    loop = asyncio.get_running_loop()
    start = loop.time()
    due = start
    sent = 0
    while sent < max_messages:
        due += rng.expovariate(rate)
        if due - start > seconds:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
        sent += 1
    offered_seconds = loop.time() - start
    if tasks:
        await asyncio.wait(tasks, timeout=STEP_TIMEOUT * 6)
    for t in tasks:
        if not t.done():
            t.cancel()
            tally.fail(asyncio.TimeoutError())
    while idle:
        await idle.pop().quit()
    return tally, {"offered": sent, "offered_seconds": offered_seconds,
                   "waited_for_connection": waited[0]}


def probe(host, port, rate, seconds, max_messages, reuse, max_connections, size, seed=1):
    """Open loop at `rate` messages/s for up to `seconds` or `max_messages`;
    returns (Tally, info)."""
    return asyncio.run(_probe(host, port, rate, seconds, max_messages, reuse,
                              max_connections, size, seed))


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]
