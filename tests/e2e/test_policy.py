"""Sender and recipient rules, per user and for everyone, the total
connection limit and the open-relay warning, through the real binary."""

import smtplib
import unittest

from harness import Relay, RawClient, hash_password

PASSWORD = "scanner password"


class PolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(
            listeners=[{"name": "lan", "address": "127.0.0.1:0", "tls": "none",
                        "auth": "optional", "allow_plaintext_auth": True}],
            senders={"allowed": ["@example.com", "erp@partner.example"],
                     "default": "noreply@example.com"},
            recipients={"allowed_domains": ["example.com", "example.org"]},
            auth={"users": [{"name": "scanner", "password_hash": hash_password(PASSWORD),
                             "sender_override": "scans@example.com",
                             "allowed_recipient_domains": ["example.org"]}]},
        ).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.relay.stop()
        cls.relay.cleanup()
        assert rc == 0, f"relay exited with {rc}"

    def sender_of(self, subject):
        import time
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for eml, meta in self.relay.delivered():
                if b"Subject: " + subject.encode() + b"\r\n" in eml:
                    return meta["sender"]
            time.sleep(0.05)
        self.fail(f"{subject} not delivered:\n" + self.relay.log())

    def send(self, sender, rcpts, subject, login=False):
        with smtplib.SMTP("127.0.0.1", self.relay.port, timeout=10) as s:
            if login:
                s.login("scanner", PASSWORD)
            return s.sendmail(sender, rcpts, f"Subject: {subject}\r\n\r\nbody\r\n".encode())

    def test_allowed_sender_passes_unchanged(self):
        self.send("alice@example.com", ["bob@example.com"], "allowed")
        self.assertEqual(self.sender_of("allowed"), "alice@example.com")
        self.send("erp@partner.example", ["bob@example.com"], "exact address")
        self.assertEqual(self.sender_of("exact address"), "erp@partner.example")

    def test_refused_sender(self):
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            self.send("mallory@evil.example", ["bob@example.com"], "refused")
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.1"))

    def test_null_and_domainless_senders_get_the_default(self):
        self.send("", ["bob@example.com"], "null sender")
        self.assertEqual(self.sender_of("null sender"), "noreply@example.com")
        self.send("copier", ["bob@example.com"], "no domain")
        self.assertEqual(self.sender_of("no domain"), "noreply@example.com")

    def test_user_sender_override(self):
        self.send("junk@whatever.invalid", ["carol@example.org"], "override", login=True)
        self.assertEqual(self.sender_of("override"), "scans@example.com")

    def test_recipient_domains(self):
        refused = self.send("alice@example.com", ["a@example.com", "b@elsewhere.example"],
                            "rcpt domains")
        self.assertEqual(list(refused), ["b@elsewhere.example"])
        self.assertEqual(refused["b@elsewhere.example"][0], 550)
        # The user may only write to example.org, narrower than everyone's rule.
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            self.send("x@example.com", ["a@example.com"], "user rcpt", login=True)


class ConnectionLimitTest(unittest.TestCase):
    def test_total_connections(self):
        with Relay(smtp={"max_connections": 3}) as relay:
            clients = [RawClient(relay.port) for _ in range(3)]
            self.assertEqual([c.code() for c in clients], [220, 220, 220])
            extra = RawClient(relay.port)
            code, lines = extra.reply()
            self.assertEqual(code, 421)
            self.assertTrue(lines[0].startswith("421 4.7.0"), lines)
            clients[0].send(b"QUIT\r\n")
            self.assertEqual(clients[0].code(), 221)
            clients[0].close()
            import time
            time.sleep(0.3)
            self.assertEqual(RawClient(relay.port).code(), 220)


class OpenRelayTest(unittest.TestCase):
    def test_warning_at_every_start(self):
        with Relay(access={"open_relay": True}) as relay:
            self.assertTrue(relay.wait_log(r"open_relay is true"), relay.log())


if __name__ == "__main__":
    unittest.main()
