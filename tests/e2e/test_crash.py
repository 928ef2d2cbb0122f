"""Crash test: a 250 survives SIGKILL at any moment.

Client threads send mail over many connections while the queue delivers;
the relay is killed with SIGKILL at a moment drawn from a seeded RNG,
restarted on the same state directory, and killed again, CRASH_RUNS times
(default 30; `make soak` runs 500). Then it drains, stops with SIGTERM, and
the test checks:

- every message a client saw 250 for is in the outbox, byte for byte (after
  our Received: header), under the queue id it was given, with its sender and
  recipients in the .json;
- every message in the outbox is one a client sent completely, byte for byte
  too: unacknowledged messages may arrive or not, damaged ones never;
- a message is delivered again only if its delivery was in flight at a kill:
  once its .eml is written and it has left the queue, the file never changes
  again, and no kill leaves more than queue.max_in_flight deliveries of its
  own run half done; the logs agree (nothing delivered after "removed from
  the queue", no recipient twice in one run);
- nothing in state_dir/corrupt/, nothing left in the queue, no temporary
  files in the outbox, no error lines or sanitizer reports in any log, no
  client error before a kill.

The kill moment is one of four kinds, so that each phase is hit on purpose:
"timed" (uniform over the first 1.5 s of a cycle: recovery deliveries,
sessions, commits), "data" (while a client is halfway through a large
message's content), "dot" (just after some client's final dot, before or
after its 250) and "delivery" (just after the queue logged a delivery). After
a quarter of the kills the relay is also killed once while it starts, before
or just after it is ready. Every other restart binds the port it had.

CRASH_SEED=<n> repeats a seed (workload and kill plan; the timing of the
machine still varies) and CRASH_RUNS=<n> sets the number of kills. On a
failure the working directory (state, outbox, each run's log and
messages.json, the record of what was sent) is kept and its path printed.
"""

import hashlib
import json
import os
import random
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import BINARY, Relay, base_config, split_received, to_yaml

DEFAULT_RUNS = 30
WORKERS = 6                  # client threads, one connection at a time each
MAX_IN_FLIGHT = 8            # queue.max_in_flight: the bound on half-done deliveries per kill
BIG = 64 * 1024              # content above this is written in two parts with a pause between
TOKEN_RE = re.compile(rb"^Message-ID: <(T[0-9a-f]{8}-\d+-\d+-\d+)@crash\.test>\r$", re.M)
QUEUED_RE = re.compile(r"queued as (\S+)")
DELIVERED_RE = re.compile(r" (\S+) delivered to (\S+) via ")
REMOVED_RE = re.compile(r" (\S+) done after \d+ attempt\(s\), removed from the queue")
BAD_LOG_RE = re.compile(r"^\S+ \S+ (error|critical) |AddressSanitizer|LeakSanitizer|runtime error:")
SENDERS = ["scanner@example.com", "erp@example.com", "Monitor@Example.org", ""]
SPECIAL_LINES = [b".", b"..", b". leading dot", b"..double", b"", b" ", b"From the start",
                 "Gr\u00fc\u00dfe \u2013 \u00fcn\u00efc\u00f6d\u00e9 \U0001F4E8".encode(), b"\t.tab"]


# --- the workload ------------------------------------------------------------------

@dataclass
class Sent:
    """One message of the workload and what happened to it."""
    token: str
    sender: str
    rcpts: list
    size: int                # size asked for; the bytes are rebuilt from seed, token and size
    cycle: int
    length: int = 0
    sha256: str = ""
    attempted: bool = False  # MAIL was sent
    dot_sent: bool = False   # the whole content and the final dot reached the socket
    accepted: bool = False   # the client read 250 after the final dot
    queue_id: str = ""
    outcome: str = "not sent"


def filler_pool(seed):
    rng = random.Random(f"{seed}/pool")
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_=+/()<>!?'\""
    return "".join(rng.choice(alphabet) for _ in range(4096)).encode()


def build_message(seed, pool, m):
    """The bytes of `m`: CRLF line ends throughout, a final CRLF, lines that
    start with dots, 8-bit text and 998-octet lines, so what the relay stores
    after undoing the dot-stuffing must be exactly these bytes. Every body
    line but the special ones carries the token and its number."""
    rng = random.Random(f"{seed}/{m.token}")
    head = [
        b"From: " + (m.sender or "MAILER-DAEMON@crash.test").encode(),
        b"To: " + ", ".join(m.rcpts).encode(),
        b"Subject: crash test " + m.token.encode(),
        b"Message-ID: <" + m.token.encode() + b"@crash.test>",
        b"Date: Mon, 23 Nov 2026 12:00:00 +0000",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"",
    ]
    out = [b"\r\n".join(head), b"\r\n"]
    total = sum(len(x) for x in out)
    n = 0
    tok = m.token.encode()
    while total < m.size:
        r = rng.random()
        if r < 0.06:
            line = rng.choice(SPECIAL_LINES)
        elif r < 0.07:
            line = ((tok + b" max ") * 60)[:998]    # with CRLF just smtp.max_line_length
        else:
            start = rng.randrange(len(pool) - 200)
            line = b"%s %06d " % (tok, n) + pool[start:start + rng.randrange(0, 200)]
        out.append(line + b"\r\n")
        total += len(line) + 2
        n += 1
    return b"".join(out)


def plan_cycle(seed, cycle):
    """For one cycle, per worker a list of connections, each a list of
    messages; all from the seed."""
    rng = random.Random(f"{seed}/{cycle}/plan")
    plan = []
    for w in range(WORKERS):
        conns, count, n = [], rng.randint(8, 25), 0
        while n < count:
            batch = []
            for _ in range(min(rng.randint(1, 8), count - n)):
                r = rng.random()
                size = (rng.randint(1000, 4000) if r < 0.65 else
                        rng.randint(4000, 48000) if r < 0.95 else
                        rng.randint(BIG, 300000))
                sender = SENDERS[-1] if rng.random() < 0.05 else rng.choice(SENDERS[:-1])
                nrcpt = 1 if rng.random() < 0.75 else rng.randint(2, 5)
                rcpts = [f"user{i}@example.com" for i in rng.sample(range(40), nrcpt)]
                batch.append(Sent(f"T{seed & 0xffffffff:08x}-{cycle:03d}-{w}-{n:03d}",
                                  sender, rcpts, size, cycle))
                n += 1
            conns.append(batch)
        plan.append(conns)
    return plan


# --- the clients ---------------------------------------------------------------------

class Probe:
    """What the clients of one cycle are doing, for the killer to wait on."""

    def __init__(self):
        self.cond = threading.Condition()
        self.dots = 0            # final dots sent
        self.mids = 0            # large contents half sent
        self.in_content = 0      # clients sending content
        self.awaiting = 0        # clients between the final dot and its reply
        self.done = 0            # workers that have ended
        self.kill_time = None
        self.errors = []         # (monotonic time, token or None, text)

    def bump(self, attr, delta=1):
        with self.cond:
            setattr(self, attr, getattr(self, attr) + delta)
            self.cond.notify_all()

    def wait_for(self, attr, target, deadline):
        """Until the counter reaches `target`; False if the deadline passes or
        every worker ended first."""
        with self.cond:
            while getattr(self, attr) < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.done == WORKERS:
                    return False
                self.cond.wait(left)
            return True

    def error(self, m, exc):
        with self.cond:
            self.errors.append((time.monotonic(), m.token if m else None, f"{type(exc).__name__}: {exc}"))


class CrashClient(smtplib.SMTP):
    """smtplib as it is, watched at the moment the content goes out; a large
    content is written in two parts with a short pause between, so that a kill
    can find the relay holding half a message."""

    def __init__(self, probe, *args, **kwargs):
        self.probe = probe
        self.payload_next = False
        self.dot_was_sent = False
        super().__init__(*args, **kwargs)

    def data(self, msg):
        self.payload_next = True
        try:
            return super().data(msg)
        finally:
            self.payload_next = False
            if self.dot_was_sent:
                self.probe.bump("awaiting", -1)

    def send(self, s):
        # smtplib.data() sends the stuffed content and the final dot in one call.
        if not (self.payload_next and isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")):
            return super().send(s)
        self.payload_next = False
        self.probe.bump("in_content")
        try:
            if len(s) > BIG:
                super().send(s[:BIG // 2])
                self.probe.bump("mids")
                time.sleep(0.003)
                super().send(s[BIG // 2:])
            else:
                super().send(s)
        finally:
            self.probe.bump("in_content", -1)
        self.dot_was_sent = True
        self.probe.bump("awaiting")
        self.probe.bump("dots")


def run_worker(port, probe, seed, pool, conns):
    try:
        send_all(port, probe, seed, pool, conns)
    finally:
        probe.bump("done")


def send_all(port, probe, seed, pool, conns):
    """Sends its connections' messages in order and stops at the first error:
    after a kill every later attempt would be refused anyway. The socket
    timeout bounds every wait."""
    for batch in conns:
        try:
            s = CrashClient(probe, "127.0.0.1", port, local_hostname="crash.test", timeout=10)
            s.ehlo()
        except (OSError, smtplib.SMTPException) as e:
            probe.error(None, e)
            return
        try:
            for m in batch:
                raw = build_message(seed, pool, m)
                m.length, m.sha256 = len(raw), hashlib.sha256(raw).hexdigest()
                m.attempted = True
                s.dot_was_sent = False
                try:
                    code, resp = s.mail(m.sender)
                    if code != 250:
                        raise smtplib.SMTPSenderRefused(code, resp, m.sender)
                    for r in m.rcpts:
                        code, resp = s.rcpt(r)
                        if code != 250:
                            raise smtplib.SMTPRecipientsRefused({r: (code, resp)})
                    code, resp = s.data(raw)
                    if code != 250:
                        raise smtplib.SMTPDataError(code, resp)
                except (OSError, smtplib.SMTPException) as e:
                    m.dot_sent = s.dot_was_sent
                    m.outcome = f"{type(e).__name__}: {e}"
                    probe.error(m, e)
                    return
                m.dot_sent = m.accepted = True
                m.outcome = "250"
                found = QUEUED_RE.search(resp.decode("ascii", "replace"))
                m.queue_id = found.group(1) if found else ""
            try:
                s.quit()
            except (OSError, smtplib.SMTPException) as e:
                probe.error(None, e)
                return
        finally:
            s.close()


# --- the checks ----------------------------------------------------------------------

def check_outbox(seed, pool, messages, outbox):
    """Problems with what was delivered, as text; and token -> queue id."""
    problems = []
    by_token = {m.token: m for m in messages}
    found = {}
    names = sorted(p.name for p in outbox.iterdir()) if outbox.is_dir() else []
    present = set(names)
    for name in names:
        stem, _, ext = name.partition(".")
        if ext == "json":
            if stem + ".eml" not in present:
                problems.append(f"outbox: {name} without its .eml")
            continue
        if ext != "eml":
            problems.append(f"outbox: unexpected (temporary?) file {name}")
            continue
        eml = (outbox / name).read_bytes()
        try:
            received, rest = split_received(eml)
        except (AssertionError, ValueError):
            problems.append(f"outbox: {name} does not start with our Received: header: {eml[:80]!r}")
            continue
        hit = TOKEN_RE.search(rest.split(b"\r\n\r\n", 1)[0])
        m = by_token.get(hit.group(1).decode()) if hit else None
        if m is None:
            problems.append(f"outbox: {name} is no message of ours: {rest[:200]!r}")
            continue
        if m.token in found:
            problems.append(f"outbox: {m.token} delivered under two queue ids, {found[m.token]} and {stem}")
        found[m.token] = stem
        if not m.dot_sent:
            problems.append(f"outbox: {name} holds {m.token}, whose content was never sent completely "
                            f"({m.outcome})")
        if hashlib.sha256(rest).hexdigest() != m.sha256 or len(rest) != m.length:
            want = build_message(seed, pool, m)
            at = next((i for i in range(min(len(want), len(rest))) if want[i] != rest[i]),
                      min(len(want), len(rest)))
            problems.append(f"outbox: {name} ({m.token}, acknowledged: {m.accepted}) differs from what was "
                            f"sent: {len(rest)} bytes for {len(want)}, first difference at {at}: "
                            f"got {rest[at:at + 40]!r}, sent {want[at:at + 40]!r}")
        if b"by relay.test" not in received:
            problems.append(f"outbox: {name}: unexpected Received: header {received!r}")
        if m.queue_id and m.queue_id != stem:
            problems.append(f"outbox: {m.token} was acknowledged as {m.queue_id} but delivered as {stem}")
        try:
            meta = json.loads((outbox / (stem + ".json")).read_text())
        except (OSError, ValueError) as e:
            problems.append(f"outbox: {stem}.json: {e}")
            continue
        if meta.get("sender") != m.sender or meta.get("recipients") != m.rcpts or meta.get("id") != stem:
            problems.append(f"outbox: {stem}.json says {meta.get('id')!r} from {meta.get('sender')!r} "
                            f"to {meta.get('recipients')!r}; sent from {m.sender!r} to {m.rcpts!r}")
    for m in messages:
        if m.accepted and m.token not in found:
            problems.append(f"lost: {m.token} (cycle {m.cycle}, {m.length} bytes) was acknowledged as "
                            f"{m.queue_id} and never delivered")
    return problems, found


class LogBook:
    """Reads each run's log as it ends; keeps only what the checks need."""

    def __init__(self):
        self.problems = []
        self.delivered = []      # per run: the queue ids logged as delivered
        self.removed = []        # per run: the queue ids logged as removed

    def add(self, run, text):
        seen, ids = set(), set()
        for line in text.splitlines():
            hit = DELIVERED_RE.search(line)
            if hit:
                if hit.groups() in seen:
                    self.problems.append(f"{run}: {hit.group(1)} delivered to {hit.group(2)} twice")
                seen.add(hit.groups())
                ids.add(hit.group(1))
            if BAD_LOG_RE.search(line):
                self.problems.append(f"{run}: {line.strip()}")
        self.delivered.append(ids)
        self.removed.append(set(REMOVED_RE.findall(text)))

    def check(self, outbox_ids):
        """Nothing delivered in a run after an earlier one logged its removal;
        and every message in the outbox logged as delivered somewhere (if not,
        the log format changed and these checks see nothing)."""
        problems = list(self.problems)
        later = set()
        for i in reversed(range(len(self.delivered))):
            for qid in sorted(self.removed[i] & later):
                problems.append(f"run {i}: {qid} was delivered again after it was removed from the queue")
            later |= self.delivered[i]
        missing = sorted(set(outbox_ids) - later)
        if missing:
            problems.append(f"logs: no 'delivered to' line for {len(missing)} message(s) in the outbox, "
                            f"e.g. {missing[:5]} (has the log format changed?)")
        return problems


class OutboxWatch:
    """Looks at the outbox and the queue after each kill. A delivery writes a
    new .eml (temporary file, rename), so a changed inode means delivered
    again. A message whose .eml exists and that has left the queue is done:
    its file must never change again. One whose .eml is new since the last
    look and that is still queued was in flight at the kill (written, not yet
    removed): it may be delivered again, and no kill may leave more of those
    than queue.max_in_flight."""

    def __init__(self):
        self.problems = []
        self.done = {}           # queue id -> (file identity, when it was seen done)
        self.in_flight = {}      # queue id -> file identity at the kill that caught it
        self.last = {}
        self.repeats = 0         # deliveries repeated after a kill

    def look(self, label, outbox, queued):
        emls = {}
        if outbox.is_dir():
            for p in outbox.glob("*.eml"):
                st = p.stat()
                emls[p.stem] = (st.st_ino, st.st_mtime_ns)
        for qid, (ident, since) in list(self.done.items()):
            if emls.get(qid) != ident:
                self.problems.append(f"{qid} was delivered and out of the queue at {since}, yet by "
                                     f"{label} its .eml was replaced or removed")
                del self.done[qid]
        for qid, ident in list(self.in_flight.items()):
            if emls.get(qid) != ident:
                self.repeats += 1
                del self.in_flight[qid]
            elif qid not in queued:
                del self.in_flight[qid]      # finished without writing again
        caught = [qid for qid, ident in emls.items() if qid in queued and self.last.get(qid) != ident]
        if len(caught) > MAX_IN_FLIGHT:
            self.problems.append(f"{label}: {len(caught)} deliveries in flight, more than "
                                 f"queue.max_in_flight ({MAX_IN_FLIGHT}): {sorted(caught)[:10]}")
        for qid in caught:
            self.in_flight[qid] = emls[qid]
        for qid, ident in emls.items():
            if qid not in queued and qid not in self.done and qid not in self.in_flight:
                self.done[qid] = (ident, label)
        self.last = emls


def key_supported(section, key, value):
    """Whether this binary's check-config accepts `section.key: value`."""
    with tempfile.TemporaryDirectory(prefix="mb-crash-probe-") as d:
        cfg = base_config(Path(d) / "state", Path(d) / "outbox", **{section: {key: value}})
        path = Path(d) / "probe.yaml"
        path.write_text(to_yaml(cfg))
        out = subprocess.run([BINARY, "check-config", "--config", str(path)],
                             capture_output=True, text=True, timeout=60)
        return out.returncode == 0


def kill_during_startup(relay, delay, log_path):
    """Starts the relay on its configuration and state and SIGKILLs it after
    `delay` seconds, ready or not. Returns its log and exit code (-9 unless it
    ended by itself, which it should not)."""
    relay.write_config()
    extra = getattr(relay, "env", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([BINARY, "serve", "--config", str(relay.config_path)],
                                stdout=subprocess.DEVNULL, stderr=log,
                                env={**os.environ, **extra} if extra else None)
        time.sleep(delay)
        proc.kill()
        rc = proc.wait(timeout=30)
    return log_path.read_text(errors="replace"), rc


def files_in(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# --- the test ----------------------------------------------------------------------

class CrashTest(unittest.TestCase):
    def test_sigkill_at_random_moments_loses_nothing_acknowledged(self):
        seed = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
        runs = int(os.environ.get("CRASH_RUNS") or DEFAULT_RUNS)
        print(f"\ncrash test: CRASH_SEED={seed} CRASH_RUNS={runs}", file=sys.stderr, flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"mb-crash-{seed}-"))
        (work / "logs").mkdir()
        pool = filler_pool(seed)
        smtp = {"max_message_size": "10MB", "max_connections": 50}
        if key_supported("smtp", "wait_for_delivery", "0s"):
            smtp["wait_for_delivery"] = "0s"     # answer at the commit, not after the first attempt
        relay = Relay(workdir=work, smtp=smtp, logging={"level": "info", "format": "text"},
                      queue={"max_in_flight": MAX_IN_FLIGHT, "max_in_flight_per_mailbox": MAX_IN_FLIGHT,
                             "max_per_minute_per_mailbox": 0, "breaker_failures": 0,
                             "retry_delay": "1s", "max_retry_delay": "2s", "bounce_to": "none"})
        messages, logbook, watch = [], LogBook(), OutboxWatch()
        stats = {"kills with a client inside DATA": 0, "kills with a client awaiting its 250": 0,
                 "kills during start-up": 0}
        failed = True

        def ended(what, text):
            """A run ended: keep its log, look at the outbox."""
            n = len(logbook.delivered)
            (work / "logs" / f"run-{n:03d}-{what}.log").write_text(text)
            logbook.add(f"run {n} ({what})", text)
            watch.look(what, relay.outbox, set(relay.queued_ids()))

        def fail(what):
            (work / "messages.json").write_text(json.dumps([asdict(m) for m in messages], indent=1))
            self.fail(f"{what}\nCRASH_SEED={seed} CRASH_RUNS={runs}; state, outbox, logs and "
                      f"messages.json kept in {work}")

        def check_corrupt(when):
            bad = files_in(relay.state_dir / "corrupt")
            if bad:
                fail(f"{when}: files moved to corrupt/: {bad}\n" + relay.log()[-4000:])

        try:
            started = time.monotonic()
            relay.start()
            for cycle in range(runs):
                self.run_cycle(seed, pool, cycle, relay, messages, stats, fail)
                ended(f"kill-{cycle}", relay.log())
                rng = random.Random(f"{seed}/{cycle}/startup")
                if rng.random() < 0.25:
                    # Now and then a second kill while the relay starts: before
                    # it is ready, or while it sends what it recovered.
                    log_path = work / "logs" / "starting.log"
                    log, rc = kill_during_startup(relay, rng.uniform(0, 0.3), log_path)
                    log_path.unlink()
                    ended(f"startup-kill-{cycle}", log)
                    stats["kills during start-up"] += 1
                    if rc != -9:
                        fail(f"start-up after kill {cycle} ended by itself with {rc}:\n{log[-4000:]}")
                    check_corrupt(f"after the start-up kill after kill {cycle}")
                try:
                    # Every other time on the port it had, as a supervisor restarts it.
                    relay.restart(same_port=cycle % 2 == 0)
                except RuntimeError as e:
                    fail(f"start-up after kill {cycle} failed: {e}")
                check_corrupt(f"after kill {cycle}")
            cycles_done = time.monotonic()

            # Drain: everything committed goes out, then a clean stop.
            deadline = time.monotonic() + 300
            while relay.queued_ids() and time.monotonic() < deadline:
                time.sleep(0.05)
            if relay.queued_ids():
                fail(f"the queue did not drain: {len(relay.queued_ids())} left\n" + relay.log()[-4000:])
            rc = relay.stop()
            ended("final", relay.log())
            if rc != 0:
                fail(f"mailbridge exited with {rc} on SIGTERM:\n" + relay.log()[-4000:])
            drained = time.monotonic()
            check_corrupt("at the end")
            left = files_in(relay.state_dir / "queue")
            if left:
                fail(f"files left in the queue after draining: {left[:20]}")

            problems, found = check_outbox(seed, pool, messages, relay.outbox)
            problems += logbook.check(found.values())
            problems += watch.problems
            if problems:
                fail(f"{len(problems)} problem(s):\n" + "\n".join(problems[:30]))

            sent = [m for m in messages if m.attempted]
            acked = sum(m.accepted for m in sent)
            late = sum(1 for m in sent if not m.accepted and m.token in found)
            print(f"crash test: {len(sent)} messages sent ({sum(m.length for m in sent) >> 20} MiB), "
                  f"{acked} acknowledged and delivered; of the {len(sent) - acked} not acknowledged "
                  f"{late} delivered, {len(sent) - acked - late} not; {watch.repeats} deliveries "
                  f"repeated after a kill; " + ", ".join(f"{k}: {v}" for k, v in stats.items()) +
                  f"; {runs} kills {cycles_done - started:.1f}s, drain {drained - cycles_done:.1f}s, "
                  f"checks {time.monotonic() - drained:.1f}s", file=sys.stderr, flush=True)
            failed = False
        finally:
            relay.cleanup()
            if not failed:
                shutil.rmtree(work, ignore_errors=True)

    def run_cycle(self, seed, pool, cycle, relay, messages, stats, fail):
        """Clients send while the relay runs and delivers; the relay is killed
        at a moment of one of four kinds; the clients end."""
        rng = random.Random(f"{seed}/{cycle}/kill")
        plan = plan_cycle(seed, cycle)
        mine = [m for conns in plan for batch in conns for m in batch]
        messages.extend(mine)
        probe = Probe()
        threads = [threading.Thread(target=run_worker, args=(relay.port, probe, seed, pool, conns),
                                    daemon=True) for conns in plan]
        mode = rng.choices(["timed", "data", "dot", "delivery"], weights=[2, 3, 3, 2])[0]
        log_start = len(relay.lines)
        t0 = time.monotonic()
        for t in threads:
            t.start()

        deadline = t0 + 5
        if mode == "timed":
            time.sleep(rng.uniform(0, 1.5))
            hit = True
        elif mode == "data":
            hit = probe.wait_for("mids", rng.randint(1, 4), deadline)
            time.sleep(rng.uniform(0, 0.003))
        elif mode == "dot":
            hit = probe.wait_for("dots", rng.randint(1, len(mine)), deadline)
            time.sleep(rng.uniform(0, 0.002))
        else:
            # Deliveries of this cycle's messages and of those recovered at the
            # start; once the clients are done and the log has been quiet for
            # a moment, no more are coming.
            target, count, seen, quiet = rng.randint(1, len(mine)), 0, log_start, time.monotonic()
            while True:
                lines = relay.lines[seen:]
                seen += len(lines)
                now = time.monotonic()
                if lines:
                    quiet = now
                count += sum(1 for l in lines if " delivered to " in l)
                hit = count >= target
                if hit or now > deadline or (probe.done == WORKERS and now - quiet > 0.3):
                    break
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.002))

        if relay.proc.poll() is not None:
            fail(f"cycle {cycle}: mailbridge died on its own (exit {relay.proc.returncode}):\n"
                 + relay.log()[-4000:])
        with probe.cond:
            probe.kill_time = time.monotonic()
            in_content, awaiting = probe.in_content, probe.awaiting
        relay.kill()
        for t in threads:
            t.join(timeout=30)
        if any(t.is_alive() for t in threads):
            fail(f"cycle {cycle}: client threads still running 30 s after the kill")

        early = [e for e in probe.errors if e[0] < probe.kill_time]
        if early:
            fail(f"cycle {cycle}: clients failed before the kill: {early[:5]}\n" + relay.log()[-4000:])
        stats["kills with a client inside DATA"] += in_content > 0
        stats["kills with a client awaiting its 250"] += awaiting > 0
        acked = sum(m.accepted for m in mine)
        cut = sum(1 for m in mine if m.attempted and not m.accepted)
        print(f"  kill {cycle:3d}: {mode:8s}{'' if hit else ' (fallback)'} at "
              f"{probe.kill_time - t0:5.3f}s, {acked:3d} acknowledged, {cut} cut off, "
              f"{in_content} sending content, {awaiting} awaiting 250", file=sys.stderr, flush=True)


if __name__ == "__main__":
    unittest.main()
