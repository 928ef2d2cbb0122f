"""The disk under the spool: the order of writes, fsyncs and renames behind a
"250", and what a client hears when the disk fails or fills up (issue 4).

The relay runs with the faultfs shim (tests/faultfs/faultfs.c, the CMake
target `faultfs`, found through MAILBRIDGE_FAULTFS) preloaded. The shim
appends one line per write, fsync, rename, open, close and unlink on
`<state_dir>/queue` to a log, after the call returns, and fails the calls a
test names while a trigger file exists. A test appends its own marker line
to the same log (O_APPEND) the moment the client has the reply, so the
log's order is the order in which things happened.

A write or fsync that fails must get `451 4.3.0`, never 250, and leave
nothing of the message in the spool. With too little free space
(`queue.min_free_space`) the relay refuses at MAIL with `452 4.3.1`; those
tests need no shim.
"""

import os
import re
import shutil
import smtplib
import tempfile
import time
import unittest
from collections import namedtuple
from pathlib import Path

from harness import BINARY, RawClient, Relay, preload_env, split_received

FAULTFS = os.environ.get("MAILBRIDGE_FAULTFS") or str(
    Path(BINARY).resolve().parents[2] / "tests" / "libfaultfs.so")

SENDER = "scanner@example.com"
RECIPIENT = "alice@example.com"

Call = namedtuple("Call", "op path to result err injected tid")
CALL_RE = re.compile(
    r"^(?P<op>\w+) (?P<path>\S+)(?: (?P<to>\S+))? = (?P<result>-?\d+)"
    r"(?: (?P<err>E\w+))?(?P<injected> injected)? tid=(?P<tid>\d+)$")
MARK = "MARK"


def message(subject, size=0):
    """A message of at least `size` octets, in lines of 78 octets."""
    head = f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\n".encode()
    body = b"%s\r\n" % subject.encode()
    line = b"0123456789" * 7 + b"abcdef\r\n"
    missing = size - len(head) - len(body)
    return head + body + line * max(0, -(-missing // len(line)))


class FaultRelay(Relay):
    """A Relay with faultfs preloaded, logging calls on its queue directory
    and failing those that `fail` names (faultfs rules, op:ERRNO[:substring])
    while armed."""

    def __init__(self, workdir, fail=None, after=None, short=False, delay=None, **overrides):
        work = Path(workdir)
        self.fault_log = work / "faultfs.log"
        self.trigger = work / "faultfs.armed"
        state = work / "state"  # as Relay lays it out
        env = preload_env(FAULTFS)
        env["FAULTFS_LOG"] = str(self.fault_log)
        env["FAULTFS_MATCH"] = str(state / "queue")
        env["FAULTFS_TRIGGER"] = str(self.trigger)
        if fail:
            env["FAULTFS_FAIL"] = fail
        if after:
            env["FAULTFS_AFTER"] = str(after)
        if short:
            env["FAULTFS_SHORT"] = "1"
        if delay:
            env["FAULTFS_DELAY"] = delay
        super().__init__(workdir=work, env=env, **overrides)
        assert self.state_dir == state

    @property
    def queue_dir(self):
        return self.state_dir / "queue"

    def arm(self):
        self.trigger.touch()

    def disarm(self):
        self.trigger.unlink(missing_ok=True)

    def mark(self, text):
        with open(self.fault_log, "a") as f:
            f.write(f"{MARK} {text}\n")

    def calls(self):
        """The log: Call tuples, and ("MARK", text) for the test's markers."""
        out = []
        if not self.fault_log.exists():
            return out
        for line in self.fault_log.read_text().splitlines():
            if line.startswith(MARK + " "):
                out.append((MARK, line[len(MARK) + 1:]))
                continue
            m = CALL_RE.match(line)
            if not m:
                raise AssertionError(f"unreadable faultfs line: {line!r}")
            out.append(Call(m["op"], m["path"], m["to"], int(m["result"]), m["err"],
                            bool(m["injected"]), int(m["tid"])))
        return out

    def log_text(self):
        shim = self.fault_log.read_text() if self.fault_log.exists() else "(no faultfs log)\n"
        return "--- faultfs log:\n" + shim + "--- relay log:\n" + self.log()

    def queue_files(self):
        return sorted(os.listdir(self.queue_dir)) if self.queue_dir.is_dir() else []


def transaction(port, msg, client=None):
    """MAIL, RCPT and DATA over smtplib; the reply to the content as
    (code, text). DATA's own reply must be 354."""
    s = client or smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        if client is None:
            s.ehlo("faults.test")
        for reply in (s.mail(SENDER), s.rcpt(RECIPIENT)):
            if reply[0] != 250:
                raise AssertionError(f"MAIL or RCPT refused: {reply}")
        return s.data(msg)
    finally:
        if client is None:
            s.quit()


class DiskFaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not Path(FAULTFS).is_file():
            raise AssertionError(f"faultfs shim not found at {FAULTFS}: build the CMake target "
                                 "`faultfs` or set MAILBRIDGE_FAULTFS")

    def start(self, **kw):
        work = Path(tempfile.mkdtemp(prefix="mb-faultfs-"))
        self.addCleanup(shutil.rmtree, work, True)
        relay = FaultRelay(work, **kw)
        self.addCleanup(relay.cleanup)
        return relay.start()

    def stop(self, relay):
        relay.disarm()
        rc = relay.stop()
        self.assertEqual(rc, 0, relay.log_text())

    def assert_refused_clean(self, relay, reply, op, err):
        """A 451 4.3.0 after a fault that was really injected, and nothing of
        the message left in the spool at the moment the client heard it."""
        leftovers = relay.queue_files()
        code, text = reply
        self.assertEqual((code, text[:5]), (451, b"4.3.0"), relay.log_text())
        injected = [c for c in relay.calls() if c[0] == op and c.injected and c.err == err]
        self.assertTrue(injected, f"no {op} failed with {err}:\n" + relay.log_text())
        self.assertEqual(leftovers, [], "files left in the spool after a 451:\n" + relay.log_text())
        self.assertIsNone(relay.proc.poll(), "the relay died:\n" + relay.log_text())

    def assert_recovers(self, relay, client=None):
        """Without the fault the next message is accepted and delivered, and
        it is the only one delivered: the refused one never is."""
        relay.disarm()
        good = message("after the fault")
        code, text = transaction(relay.port, good, client)
        self.assertEqual(code, 250, relay.log_text())
        [(eml, meta)] = relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], good)
        self.assertEqual(meta["sender"], SENDER)
        self.assertEqual(len(relay.outbox_files()), 1, relay.log_text())
        self.wait_queue_empty(relay)

    def wait_queue_empty(self, relay, timeout=10):
        deadline = time.monotonic() + timeout
        while relay.queue_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(relay.queue_files(), [], relay.log_text())

    # --- the order behind a 250 ------------------------------------------------

    def test_fsync_order_before_250_queued(self):
        # The 250 at the commit: the tight case.
        self.check_fsync_order(smtp={"wait_for_delivery": "0s"})

    def test_fsync_order_before_250_delivered(self):
        # The default: the 250 after the first delivery attempt.
        self.check_fsync_order()

    def check_fsync_order(self, **overrides):
        # Each write, fsync and rename is slowed down, so a 250 sent before one
        # of them had completed would land in the log ahead of its line.
        relay = self.start(delay="write:30,fsync:80,rename:30", **overrides)
        msg = message("fsync order", size=150_000)  # several 64 KiB writes
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
            s.ehlo("faults.test")
            code, text = transaction(relay.port, msg, s)
            relay.mark(f"reply {code}")  # before anything else, QUIT included
        self.assertEqual(code, 250, relay.log_text())
        m = re.search(rb"(?:queued as|queue id) (\w+)", text)
        self.assertIsNotNone(m, text)
        qid = m.group(1).decode()

        calls = relay.calls()
        log = relay.log_text()
        mark = calls.index((MARK, "reply 250"))
        before = calls[:mark]
        qdir = str(relay.queue_dir)
        incoming = f"{qdir}/{qid}.mail.tmp"
        final = f"{qdir}/{qid}.mail"
        for c in before:
            # Delivery may already be removing the message: it unlinks an
            # `<id>.env` that a message delivered at its first attempt never had.
            if c.op == "unlink" and c.err == "ENOENT" and c.path.endswith(".env"):
                continue
            self.assertFalse(c.injected or c.result < 0, f"a call failed: {c}\n{log}")

        def first(pred, start=0, what=""):
            for i in range(start, len(before)):
                if pred(before[i]):
                    return i
            self.fail(f"not before the 250 (from line {start}): {what}\n{log}")

        created = first(lambda c: c.op.startswith("open") and c.path == incoming, what="content created")
        writes = [i for i, c in enumerate(before) if c.op == "write" and c.path == incoming]
        self.assertGreater(len(writes), 1, log)
        self.assertGreater(writes[0], created, log)
        # The last write carries the envelope's trailer; the fsync follows it,
        # and the rename to the final name, the commit point, the fsync.
        content_sync = first(lambda c: c.op == "fsync" and c.path == incoming, what="content fsync")
        self.assertGreater(content_sync, writes[-1], "content written after its fsync\n" + log)
        renamed = first(lambda c: c.op.startswith("rename") and c.path == incoming and c.to == final,
                        content_sync, "message renamed into place after its fsync")
        self.assertFalse([c for c in before if (c.path.endswith(".env") or ".env.tmp." in c.path)
                          and c.op != "unlink"],
                         "a new message needs no envelope file\n" + log)
        # Delivery may already be removing the message on another thread and
        # fsync the directory too; the commit's own fsync is the committer's.
        committer = before[renamed].tid
        first(lambda c: c.op == "fsync" and c.path == qdir and c.tid == committer, renamed + 1,
              "queue directory fsynced by the committer after the rename")

        # What was fsynced is the whole message and its envelope: the
        # delivered copy is the content file, byte for byte, without the
        # trailer that follows it.
        [(eml, meta)] = relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], msg)
        trailer = sum(before[i].result for i in writes) - len(eml)
        self.assertTrue(100 < trailer < 4096, f"{trailer} bytes after the content\n{log}")
        self.wait_queue_empty(relay)
        self.stop(relay)

    # --- content ------------------------------------------------------------

    def test_enospc_on_content_write_during_data(self):
        # The first 64 KiB reach the disk; the next write is short, then the
        # disk is full: a real partial file for the relay to clean up.
        relay = self.start(fail="write:ENOSPC:.mail.tmp", after=2, short=True)
        relay.arm()
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
            s.ehlo("faults.test")
            reply = transaction(relay.port, message("disk full", size=300_000), s)
            relay.mark(f"reply {reply[0]}")
            self.assert_refused_clean(relay, reply, "write", "ENOSPC")
            calls = relay.calls()
            good = [c for c in calls[:calls.index((MARK, f"reply {reply[0]}"))]
                    if c[0] == "write" and c.path.endswith(".mail.tmp") and c.result > 0]
            self.assertTrue(good, "nothing was written before the fault\n" + relay.log_text())
            self.assertTrue(relay.wait_log(r"cannot write to the spool"), relay.log_text())
            # Same connection: the session goes on after the 451.
            self.assert_recovers(relay, s)
        self.stop(relay)

    def test_eio_on_content_write_at_commit(self):
        # A small message stays in the 64 KiB buffer until the commit.
        relay = self.start(fail="write:EIO:.mail.tmp")
        relay.arm()
        reply = transaction(relay.port, message("broken disk"))
        self.assert_refused_clean(relay, reply, "write", "EIO")
        self.assert_recovers(relay)
        self.stop(relay)

    def test_enospc_creating_the_content_file(self):
        relay = self.start(fail="open:ENOSPC:.mail.tmp")
        relay.arm()
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
            s.ehlo("faults.test")
            self.assertEqual(s.mail(SENDER)[0], 250)
            self.assertEqual(s.rcpt(RECIPIENT)[0], 250)
            s.putcmd("data")
            reply = s.getreply()
            self.assert_refused_clean(relay, reply, "open", "ENOSPC")
            # A refused DATA command leaves the transaction to the client.
            self.assertEqual(s.rset()[0], 250)
            self.assert_recovers(relay, s)
        self.stop(relay)

    def test_enospc_during_bdat(self):
        relay = self.start(fail="write:ENOSPC:.mail.tmp")
        relay.arm()
        c = RawClient(relay.port, timeout=30)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO faults.test\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertIn("CHUNKING", " ".join(lines))

        def bdat_message(msg):
            c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode())
            self.assertEqual([c.code(), c.code()], [250, 250], relay.log_text())
            first, last = msg[:100_000], msg[100_000:]
            replies = []
            if first and last:
                c.send(b"BDAT %d\r\n" % len(first) + first)
                replies.append(c.reply())
            c.send(b"BDAT %d LAST\r\n" % len(last or first) + (last or first))
            replies.append(c.reply())
            return replies

        replies = bdat_message(message("bdat disk full", size=150_000))
        # The chunk whose octets did not reach the disk may be acknowledged as
        # received, or refused; the message must not be accepted.
        self.assertIn(replies[0][0], (250, 451), replies)
        self.assertNotEqual(replies[-1][0], 250, replies)
        code, lines = replies[0] if replies[0][0] == 451 else replies[-1]
        self.assert_refused_clean(relay, (code, lines[0][4:].encode()), "write", "ENOSPC")

        relay.disarm()
        good = message("bdat after the fault", size=120_000)
        replies = bdat_message(good)
        self.assertEqual([r[0] for r in replies], [250, 250], replies)
        [(eml, _)] = relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], good)
        c.send(b"QUIT\r\n")
        self.assertEqual(c.code(), 221)
        self.wait_queue_empty(relay)
        self.stop(relay)

    # --- the commit: fsync, close, envelope, rename -----------------------------

    def commit_fault(self, rule, op, err):
        relay = self.start(fail=rule)
        relay.arm()
        reply = transaction(relay.port, message(f"fault {rule}"))
        self.assert_refused_clean(relay, reply, op, err)
        self.assertTrue(relay.wait_log(r"commit failed"), relay.log_text())
        self.assert_recovers(relay)
        self.stop(relay)

    def test_eio_on_content_fsync(self):
        self.commit_fault("fsync:EIO:.mail.tmp", "fsync", "EIO")

    def test_eio_on_content_close(self):
        self.commit_fault("close:EIO:.mail.tmp", "close", "EIO")

    def test_enospc_on_the_write_at_commit(self):
        # A small message and its envelope's trailer go out in one write.
        self.commit_fault("write:ENOSPC:.mail.tmp", "write", "ENOSPC")

    def test_eio_on_directory_fsync(self):
        # The message is in place by then; the relay must take it back.
        self.commit_fault("fsync:EIO:/queue$", "fsync", "EIO")

    def test_eio_on_the_rename_into_place(self):
        self.commit_fault("rename:EIO:.mail.tmp", "rename", "EIO")


class LowDiskTest(unittest.TestCase):
    """`queue.min_free_space`: below it, MAIL is refused with 452 4.3.1
    (RFC 3463: mail system full) before any content is sent."""

    def mail_reply(self, relay):
        c = RawClient(relay.port, timeout=30)
        try:
            self.assertEqual(c.code(), 220)
            c.send(b"EHLO faults.test\r\n")
            self.assertEqual(c.code(), 250)
            c.send(f"MAIL FROM:<{SENDER}>\r\n".encode())
            reply = c.reply()
            c.send(b"QUIT\r\n")
            self.assertEqual(c.code(), 221)
            return reply
        finally:
            c.close()

    def start(self, **overrides):
        relay = Relay(**overrides)
        self.addCleanup(relay.cleanup)
        return relay.start()

    def stop(self, relay):
        self.assertEqual(relay.stop(), 0, relay.log())

    def test_mail_refused_below_min_free_space(self):
        relay = self.start(queue={"min_free_space": "100000GB"})
        code, lines = self.mail_reply(relay)
        self.assertEqual(code, 452, relay.log())
        self.assertTrue(lines[0].startswith("452 4.3.1"), lines)
        with self.assertRaises(smtplib.SMTPSenderRefused) as ctx:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                s.sendmail(SENDER, [RECIPIENT], message("no room"))
        self.assertEqual(ctx.exception.smtp_code, 452)
        self.assertEqual(relay.outbox_files(), [])
        self.assertEqual(relay.queued_ids(), [])
        self.stop(relay)

    def test_zero_turns_the_check_off(self):
        relay = self.start(queue={"min_free_space": "0"})
        code, lines = self.mail_reply(relay)
        self.assertEqual(code, 250, lines)
        msg = message("room enough")
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
            self.assertEqual(s.sendmail(SENDER, [RECIPIENT], msg), {})
        [(eml, _)] = relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], msg)
        self.stop(relay)


if __name__ == "__main__":
    unittest.main()
