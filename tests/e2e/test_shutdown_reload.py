"""SIGTERM and SIGHUP through the real binary.

SIGTERM: the listeners close, a session waiting for a command gets 421 4.3.2,
a session in the middle of a message may finish it (its 250 is real: the
message is delivered, now or after the next start), and the process exits 0.

SIGHUP: the configuration file is read again. New sessions get the new access,
auth, sender/recipient and smtp settings; open sessions keep theirs and are not
dropped; an invalid file changes nothing; what needs a restart is named in the
log and keeps its running value.
"""

import signal
import smtplib
import socket
import time
import unittest

from harness import Relay, RawClient

BODY = (b"From: scanner@example.com\r\nTo: a@example.com\r\nSubject: shutdown\r\n\r\n"
        b"first half\r\n")


def send(relay, rcpt="a@example.com"):
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
        s.ehlo("device.test")
        s.sendmail("scanner@example.com", [rcpt],
                   b"Subject: reload\r\n\r\nbody\r\n")


def open_transaction(relay, rcpt="a@example.com"):
    """A raw session that has sent DATA and half the content."""
    c = RawClient(relay.port)
    assert c.code() == 220
    c.send(b"EHLO device.test\r\n")
    assert c.code() == 250
    c.send(f"MAIL FROM:<scanner@example.com>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
    assert c.code() == 250
    assert c.code() == 250
    assert c.code() == 354
    c.send(BODY)
    return c


class ShutdownTest(unittest.TestCase):
    def test_sigterm_lets_the_message_in_progress_finish(self):
        relay = Relay()
        try:
            relay.start()
            busy = open_transaction(relay)
            idle = RawClient(relay.port)
            self.assertEqual(idle.code(), 220)
            idle.send(b"EHLO idle.test\r\n")
            self.assertEqual(idle.code(), 250)

            relay.proc.send_signal(signal.SIGTERM)
            self.assertTrue(relay.wait_log(r"signal 15: stopping"), relay.log())

            # The idle session is told at once; nobody new gets in.
            code, lines = idle.reply()
            self.assertEqual(code, 421, lines)
            self.assertTrue(lines[0].startswith("421 4.3.2"), lines)
            self.assertTrue(idle.closed())
            with self.assertRaises(OSError):
                probe = socket.create_connection(("127.0.0.1", relay.port), timeout=2)
                probe.settimeout(2)
                if not probe.recv(1):   # accepted by a closing socket: no greeting
                    raise ConnectionResetError("closed without a greeting")

            # The message under way still gets its real answer; a MAIL pipelined
            # behind it does not start another transaction.
            time.sleep(0.3)
            self.assertIsNone(relay.proc.poll(), "exited while a message was under way")
            busy.send(b"second half\r\n.\r\nMAIL FROM:<scanner@example.com>\r\n")
            code, lines = busy.reply()
            self.assertEqual(code, 250, lines)
            code, lines = busy.reply()
            self.assertEqual(code, 421, lines)
            self.assertTrue(lines[0].startswith("421 4.3.2"), lines)
            self.assertTrue(busy.closed())

            self.assertEqual(relay.proc.wait(timeout=30), 0, relay.log())
            relay.stop()
            # Delivered before the exit, or kept for the next start.
            if not relay.delivered():
                relay.restart()
                relay.wait_outbox(1)
                self.assertEqual(relay.stop(), 0, relay.log())
            [(eml, _meta)] = relay.delivered()
            self.assertIn(b"first half\r\nsecond half\r\n", eml)
            self.assertEqual(relay.queued_ids(), [])
        finally:
            relay.cleanup()

    def test_sigterm_answers_a_session_waiting_for_delivery_at_once(self):
        # Pacing holds the second message back, so its session is waiting
        # for a first attempt that will not come before the 30 s wait ends.
        relay = Relay(smtp={"wait_for_delivery": "30s"},
                      queue={"max_per_minute_per_mailbox": 1})
        try:
            relay.start()
            send(relay)
            self.assertEqual(len(relay.delivered()), 1)
            c = open_transaction(relay)
            c.send(b".\r\n")
            self.assertTrue(relay.wait_log(r"waiting up to 30000ms for the first delivery attempt"),
                            relay.log())
            started = time.monotonic()
            relay.proc.send_signal(signal.SIGTERM)
            code, lines = c.reply()
            self.assertEqual(code, 250, lines)
            self.assertRegex(lines[0], r"^250 2\.0\.0 Ok: queued as \w+")
            self.assertLess(time.monotonic() - started, 10)
            self.assertEqual(relay.proc.wait(timeout=30), 0, relay.log())
            relay.stop()
            self.assertEqual(len(relay.queued_ids()), 1)
            relay.restart()
            relay.wait_outbox(2, timeout=90)
            self.assertEqual(relay.stop(), 0, relay.log())
        finally:
            relay.cleanup()


class ReloadTest(unittest.TestCase):
    def reload(self, relay):
        relay.write_config()
        mark = len(relay.lines)
        relay.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = "".join(relay.lines[mark:])
            if "SIGHUP: configuration reloaded" in text or "SIGHUP: configuration not reloaded" in text:
                return text
            time.sleep(0.05)
        self.fail("no reload in the log:\n" + relay.log())

    def rcpt_code(self, client, rcpt):
        client.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        return client.code()

    def session(self, relay):
        c = RawClient(relay.port)
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO device.test\r\nMAIL FROM:<scanner@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.code(), 250)
        return c

    def test_new_rules_for_new_sessions_open_ones_keep_theirs(self):
        with Relay(recipients={"allowed_domains": ["example.com"]}) as relay:
            before = self.session(relay)
            relay.config["recipients"] = {"allowed_domains": ["example.org"]}
            text = self.reload(relay)
            self.assertIn("SIGHUP: configuration reloaded", text)
            self.assertNotIn("restart mailbridge", text)

            after = self.session(relay)
            self.assertEqual(self.rcpt_code(after, "a@example.com"), 550)
            self.assertEqual(self.rcpt_code(after, "a@example.org"), 250)
            # The session opened before the reload was not dropped and still
            # works by the rules it started with.
            self.assertEqual(self.rcpt_code(before, "a@example.com"), 250)
            self.assertEqual(self.rcpt_code(before, "a@example.org"), 550)
            for c in (before, after):
                c.send(b"QUIT\r\n")
                self.assertEqual(c.code(), 221)

    def test_a_new_user_can_authenticate_after_reload(self):
        from harness import hash_password
        listener = {"name": "test", "address": "127.0.0.1:0", "tls": "none",
                    "auth": "required", "allow_plaintext_auth": True}
        relay = Relay(listeners=[listener], access={"allowed_networks": ["127.0.0.0/8"],
                                                    "anonymous_networks": ["192.0.2.0/24"]},
                      auth={"users": [{"name": "old", "password_hash": hash_password("pw-old-1")}]})
        with relay:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                s.ehlo("device.test")
                with self.assertRaises(smtplib.SMTPAuthenticationError):
                    s.login("new", "pw-new-1")
            relay.config["auth"] = {"users": [
                {"name": "new", "password_hash": hash_password("pw-new-1")}]}
            self.assertIn("SIGHUP: configuration reloaded", self.reload(relay))
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                s.ehlo("device.test")
                s.login("new", "pw-new-1")
                s.sendmail("scanner@example.com", ["a@example.com"], b"Subject: x\r\n\r\nx\r\n")
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
                s.ehlo("device.test")
                with self.assertRaises(smtplib.SMTPAuthenticationError):
                    s.login("old", "pw-old-1")
            relay.wait_outbox(1)

    def test_a_broken_file_changes_nothing(self):
        with Relay(recipients={"allowed_domains": ["example.com"]}) as relay:
            good = relay.config_path.read_text()
            relay.config_path.write_text(good.replace('"max_message_size": "10MB"',
                                                      '"max_message_size": "ten"'))
            relay.proc.send_signal(signal.SIGHUP)
            self.assertTrue(relay.wait_log(r"SIGHUP: configuration not reloaded"), relay.log())
            # The error names the file and the line, as `check-config` would.
            self.assertRegex(relay.log(), r"SIGHUP: \S*mailbridge\.yaml:\d+:\d+: smtp\.max_message_size")
            c = self.session(relay)
            self.assertEqual(self.rcpt_code(c, "a@example.com"), 250)
            self.assertEqual(self.rcpt_code(c, "a@example.org"), 550)
            send(relay)
            relay.wait_outbox(1)

    def test_what_needs_a_restart_is_named_and_kept(self):
        with Relay() as relay:
            old_outbox = relay.outbox
            relay.config["providers"][0]["directory"] = str(relay.dir / "elsewhere")
            relay.config["listeners"].append({"name": "second", "address": "127.0.0.1:0",
                                              "tls": "none", "auth": "none"})
            relay.config["logging"] = {"level": "warn", "format": "json"}
            text = self.reload(relay)
            self.assertIn("SIGHUP: configuration reloaded", text)
            self.assertRegex(text, r"SIGHUP: listeners .*changed; restart mailbridge to apply")
            self.assertRegex(text, r"SIGHUP: providers changed; restart mailbridge")
            self.assertRegex(text, r"SIGHUP: logging.format changed; restart mailbridge")
            # Still one listener, still the old outbox, still text logs; the
            # level did change: info lines are gone.
            mark = len(relay.lines)
            send(relay)
            relay.wait_outbox(1)
            self.assertTrue(old_outbox.is_dir())
            self.assertFalse((relay.dir / "elsewhere").exists())
            self.assertNotIn("connect from", "".join(relay.lines[mark:]))
            self.assertEqual(len([l for l in relay.lines if "listening on 127.0.0.1:" in l and "(admin," not in l]), 1)


if __name__ == "__main__":
    unittest.main()
