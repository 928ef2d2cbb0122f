"""`mailbridge queue ...` against the running daemon, through its control
socket: list, show, hold (durable across a restart), release, retry, flush
and delete, with deliveries deferred by an outbox that cannot be written.

queue.retry_delay is an hour, so only a command can make a deferred message
move while the test runs."""

import json
import os
import smtplib
import subprocess
import time
import unittest

from harness import BINARY, Relay

UNKNOWN_ID = "ZZZZZZZZZZZZZZZZZZZZ"


def wait_until(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class QueueControlTest(unittest.TestCase):
    def setUp(self):
        self.relay = Relay(queue={"retry_delay": "1h", "max_retry_delay": "1h",
                                  "breaker_failures": 0})
        self.addCleanup(self.relay.cleanup)
        # Tests run as root, so permissions would not stop the writer: a
        # regular file where the outbox directory should be does.
        self.relay.outbox.write_text("not a directory")

    # --- helpers ---------------------------------------------------------

    def queue(self, *args, rc=0, socket=False):
        where = (["--socket", str(self.relay.state_dir / "control.sock")] if socket
                 else ["--config", str(self.relay.config_path)])
        out = subprocess.run([BINARY, "queue", *args, *where], capture_output=True, text=True,
                             timeout=60)
        if rc is not None:
            self.assertEqual(out.returncode, rc,
                             f"queue {' '.join(args)}: stdout={out.stdout!r} "
                             f"stderr={out.stderr!r}\n" + self.relay.log())
        return out

    def listing(self):
        reply = json.loads(self.queue("list", "--json").stdout)
        self.assertTrue(reply["ok"], reply)
        return {m["id"]: m for m in reply["messages"]}

    def send(self, subject, rcpts=("alice@example.com",)):
        with smtplib.SMTP("127.0.0.1", self.relay.port, timeout=10) as s:
            msg = (f"From: scanner@example.com\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
                   f"\r\nbody of {subject}\r\n").encode()
            s.ehlo()
            self.assertEqual(s.mail("scanner@example.com")[0], 250)
            for r in rcpts:
                self.assertEqual(s.rcpt(r)[0], 250)
            code, text = s.data(msg)
            self.assertEqual(code, 250, text)
            return text.decode().rsplit(" ", 1)[-1]   # "2.0.0 Ok: queued as <id>"

    def delivered_ids(self):
        return sorted(p.stem for p in self.relay.outbox_files())

    def wait_deferred(self, ids):
        """Until every id has had its first (failed) attempt."""
        def ready():
            items = self.listing()
            return all(i in items and items[i]["attempts"] >= 1 and not items[i]["in_flight"]
                       for i in ids)
        wait_until(ready, what="first attempts of " + ", ".join(ids))

    # --- the test --------------------------------------------------------

    def test_queue_commands(self):
        self.relay.start()
        ids = {}
        for name in ("held", "retried", "flushed", "deleted"):
            ids[name] = self.send(name, rcpts=("alice@example.com", "bob@example.com"))
        held, retried, flushed, deleted = (ids[n] for n in ("held", "retried", "flushed",
                                                            "deleted"))
        self.assertEqual(sorted(ids.values()), self.relay.queued_ids())
        self.wait_deferred(ids.values())

        # list, for people
        out = self.queue("list").stdout
        for i in ids.values():
            self.assertIn(i, out)
        self.assertIn("<scanner@example.com>", out)
        self.assertIn("next attempt at ", out)
        self.assertIn("\n    alice@example.com\n    bob@example.com\n", out)
        self.assertIn("last error: ", out)
        self.assertTrue(out.endswith("4 messages, 0 held\n"), out)

        # list --json: the daemon's reply, pretty-printed
        out = self.queue("list", "--json").stdout
        self.assertIn('\n  "ok": true,\n', out)
        items = {m["id"]: m for m in json.loads(out)["messages"]}
        self.assertEqual(sorted(items), sorted(ids.values()))
        m = items[retried]
        self.assertEqual(m["sender"], "scanner@example.com")
        self.assertEqual([r["address"] for r in m["recipients"]],
                         ["alice@example.com", "bob@example.com"])
        self.assertEqual({r["state"] for r in m["recipients"]}, {"pending"})
        self.assertGreaterEqual(m["attempts"], 1)
        self.assertGreater(m["next_attempt"], time.time() + 1800)
        self.assertTrue(m["last_error"])
        self.assertGreater(m["size"], 0)
        self.assertFalse(m["held"])

        # show, once through --socket
        out = self.queue("show", retried, socket=True).stdout
        self.assertIn(f"id:           {retried}\n", out)
        self.assertIn("sender:       <scanner@example.com>\n", out)
        self.assertIn("  alice@example.com  pending", out)
        self.assertIn("held:         no\n", out)
        shown = json.loads(self.queue("show", retried, "--json").stdout)
        self.assertEqual(shown["message"]["id"], retried)

        # hold
        self.assertEqual(self.queue("hold", held).stdout, f"held {held}\n")
        self.assertTrue(self.listing()[held]["held"])
        out = self.queue("list").stdout
        self.assertTrue(out.endswith("4 messages, 1 held\n"), out)
        self.assertIn(f"{held} ", out)

        # delete: gone, and never delivered or bounced below
        self.assertEqual(self.queue("delete", deleted).stdout, f"deleted {deleted}\n")
        self.assertNotIn(deleted, self.relay.queued_ids())
        self.assertNotIn(deleted, self.listing())

        # The outbox recovers; with an hour's retry delay nothing moves by itself.
        self.relay.outbox.unlink()
        time.sleep(1.5)
        self.assertEqual(self.delivered_ids(), [])

        # retry ID
        self.assertEqual(self.queue("retry", retried).stdout, f"{retried} due now\n")
        wait_until(lambda: retried in self.delivered_ids(), what="the retried message")
        wait_until(lambda: retried not in self.relay.queued_ids(), what="its removal")

        # flush: every deferred message that is not held
        self.assertEqual(self.queue("flush").stdout, "1 message due now\n")
        wait_until(lambda: flushed in self.delivered_ids(), what="the flushed message")
        time.sleep(1)
        self.assertEqual(self.delivered_ids(), sorted([retried, flushed]))
        self.assertEqual(json.loads(self.queue("retry", "--all", "--json").stdout),
                         {"ok": True, "count": 0})

        # A hold survives a restart, where recovered messages are otherwise due at once.
        self.assertEqual(self.relay.stop(), 0, self.relay.log())
        self.relay.start()
        self.assertTrue(self.relay.wait_log(r"1 queued messages recovered"), self.relay.log())
        time.sleep(1.5)
        self.assertNotIn(held, self.delivered_ids())
        items = self.listing()
        self.assertEqual(list(items), [held])
        self.assertTrue(items[held]["held"])
        self.assertTrue(self.queue("list").stdout.endswith("1 message, 1 held\n"))

        # release
        self.assertEqual(self.queue("release", held).stdout, f"released {held}\n")
        wait_until(lambda: held in self.delivered_ids(), what="the released message")
        wait_until(lambda: not self.relay.queued_ids(), what="an empty queue")
        self.assertEqual(self.queue("list").stdout, "0 messages, 0 held\n")

        # The deleted message was neither delivered nor bounced.
        self.assertEqual(self.delivered_ids(), sorted([held, retried, flushed]))
        self.assertEqual({meta["sender"] for _, meta in self.relay.delivered()},
                         {"scanner@example.com"})

        # Unknown id: the daemon says no.
        for command in ("show", "retry", "hold", "release", "delete"):
            out = self.queue(command, UNKNOWN_ID, rc=1)
            self.assertIn(f"no message {UNKNOWN_ID}", out.stderr)
            self.assertEqual(out.stdout, "")
        out = self.queue("show", UNKNOWN_ID, "--json", rc=1)
        self.assertFalse(json.loads(out.stdout)["ok"])

        # Not an id at all: a usage error, found without the daemon.
        out = self.queue("hold", "../etc/passwd", rc=2)
        self.assertIn("is not a queue id", out.stderr)

        self.assertEqual(self.relay.stop(), 0, self.relay.log())
        self.assertFalse((self.relay.state_dir / "control.sock").exists())

        # The daemon is gone.
        out = self.queue("list", rc=3)
        self.assertIn("cannot reach mailbridge at ", out.stderr)
        self.assertIn("is the service running?", out.stderr)
        out = self.queue("list", rc=3, socket=True)
        self.assertIn("is the service running?", out.stderr)

    def test_second_daemon_on_the_same_state_directory_is_refused(self):
        self.relay.outbox.unlink()
        self.relay.start()
        other = Relay(workdir=self.relay.dir / "other")
        other.config = json.loads(json.dumps(self.relay.config))
        other.config_path = self.relay.dir / "other.yaml"
        other.dir.mkdir()
        try:
            with self.assertRaises(RuntimeError) as ctx:
                other.start()
            self.assertIn("another mailbridge is running with this state directory",
                          str(ctx.exception))
        finally:
            other.cleanup()
        # The first one still answers.
        self.assertTrue(self.queue("list").stdout.endswith("0 messages, 0 held\n"))
        self.assertEqual(self.relay.stop(), 0, self.relay.log())

    def test_config_with_secrets_only_the_service_can_read(self):
        # The daemon reads its PKCS#12 password from a systemd credential; the
        # command, run outside the service, has no CREDENTIALS_DIRECTORY and
        # needs only the state directory from the same file.
        creds = self.relay.dir / "credentials"
        creds.mkdir()
        (creds / "p12-password").write_text("secret-value\n")
        p12 = self.relay.dir / "unused.p12"
        p12.write_bytes(b"never loaded: no listener uses TLS")
        self.relay.config["tls"] = {"pkcs12_file": str(p12),
                                    "pkcs12_password_credential": "p12-password"}
        self.relay.env["CREDENTIALS_DIRECTORY"] = str(creds)
        self.relay.outbox.unlink()
        self.relay.start()
        env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        out = subprocess.run([BINARY, "queue", "list", "--config", str(self.relay.config_path)],
                             capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(out.returncode, 0, out)
        self.assertTrue(out.stdout.endswith("0 messages, 0 held\n"), out.stdout)
        self.assertNotIn("secret-value", out.stdout + out.stderr)
        # The daemon itself still insists on what it needs.
        check = subprocess.run([BINARY, "check-config", "--config", str(self.relay.config_path)],
                               capture_output=True, text=True, timeout=60, env=env)
        self.assertNotEqual(check.returncode, 0, check)
        self.assertIn("CREDENTIALS_DIRECTORY is not set", check.stderr)
        self.assertEqual(self.relay.stop(), 0, self.relay.log())

    def test_config_errors_and_usage(self):
        bad = self.relay.dir / "bad.yaml"
        bad.write_text("server: [\n")
        out = subprocess.run([BINARY, "queue", "list", "--config", str(bad)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("bad.yaml", out.stderr)
        out = subprocess.run([BINARY, "queue", "list"], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("--config", out.stderr)
        out = subprocess.run([BINARY, "queue", "show", "--socket", "/nonexistent.sock"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 2, out)


if __name__ == "__main__":
    unittest.main()
