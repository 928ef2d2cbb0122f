"""Routing across several providers: `routes:` rules by sender, SMTP AUTH
user, listener and recipient domain, the first provider as the default, and
`mailbridge route` saying what a message would get. Two outbox providers
stand in for two tenants: each message lands in exactly one of them."""

import subprocess
import unittest

from harness import BINARY, Relay, hash_password, send_message

PASSWORD = "route-test-password"


class RoutingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hash = hash_password(PASSWORD)

    def setUp(self):
        relay = Relay()
        self.addCleanup(relay.cleanup)
        a, b = relay.dir / "tenant-a", relay.dir / "tenant-b"
        relay.config["providers"] = [{"name": "tenant-a", "type": "outbox", "directory": str(a)},
                                     {"name": "tenant-b", "type": "outbox", "directory": str(b)}]
        relay.config["listeners"] = [
            {"name": "lan", "address": "127.0.0.1:0", "tls": "none", "auth": "none"},
            {"name": "apps", "address": "127.0.0.1:0", "tls": "none", "auth": "optional",
             "allow_plaintext_auth": True}]
        relay.config["auth"] = {"users": [{"name": "erp", "password_hash": self.hash}]}
        relay.config["routes"] = [
            {"from": ["@subsidiary.example"], "provider": "tenant-b"},
            {"user": ["erp"], "provider": "tenant-b"},
            {"to_domain": ["partner.example"], "listener": ["lan"], "provider": "tenant-b"},
        ]
        self.relay, self.a, self.b = relay, a, b

    def landed(self, subject):
        """Which outbox got the message with this subject."""
        self.assertEqual(self.relay.wait_queue_empty(), [])
        where = [name for name, d in (("tenant-a", self.a), ("tenant-b", self.b)) if d.exists()
                 and any(subject.encode() in p.read_bytes() for p in d.glob("*.eml"))]
        return where

    def send(self, sender, rcpts, subject, port=None, login=None):
        msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, rcpts[0], subject)).encode()
        if login is None:
            code, text = send_message(port or self.relay.ports["lan"], sender, rcpts, msg)
            self.assertEqual(code, 250, text)
            return
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.relay.ports["apps"], timeout=30) as s:
            s.login(*login)
            s.sendmail(sender, rcpts, msg)

    def test_rules_in_order_and_the_first_provider_as_default(self):
        with self.relay:
            self.send("scanner@subsidiary.example", ["x@example.com"], "by-sender-domain")
            self.send("scanner@example.com", ["x@example.com"], "by-user", login=("erp", PASSWORD))
            self.send("scanner@example.com", ["x@partner.example", "y@PARTNER.example"], "by-recipients")
            self.send("scanner@example.com", ["x@partner.example", "y@other.example"], "mixed-recipients")
            self.send("scanner@example.com", ["x@partner.example"], "other-listener",
                      port=self.relay.ports["apps"])
            self.send("scanner@example.com", ["x@example.com"], "default")
            self.assertEqual(self.landed("by-sender-domain"), ["tenant-b"])
            self.assertEqual(self.landed("by-user"), ["tenant-b"])
            self.assertEqual(self.landed("by-recipients"), ["tenant-b"])
            self.assertEqual(self.landed("mixed-recipients"), ["tenant-a"])
            self.assertEqual(self.landed("other-listener"), ["tenant-a"])
            self.assertEqual(self.landed("default"), ["tenant-a"])

    def route(self, *args):
        self.relay.write_config()
        return subprocess.run([BINARY, "route", *args, "--config", str(self.relay.config_path)],
                              capture_output=True, text=True, timeout=30)

    def test_the_route_command(self):
        out = self.route("--from", "a@subsidiary.example", "--to", "x@example.com")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("provider: tenant-b (outbox), by routes[0]", out.stdout)
        self.assertIn("mailbox: a@subsidiary.example", out.stdout)
        out = self.route("--from", "a@example.com", "--to", "x@partner.example", "--listener", "lan")
        self.assertIn("by routes[2]", out.stdout)
        out = self.route("--from", "a@example.com", "--to", "x@example.com", "--user", "erp")
        self.assertIn("provider: tenant-b (outbox), by routes[1]", out.stdout)
        out = self.route("--from", "a@example.com", "--to", "x@example.com")
        self.assertIn("provider: tenant-a (outbox), the first provider (no route matched)", out.stdout)
        # The sender rules apply first.
        self.relay.config["senders"] = {"override": "relay@subsidiary.example"}
        out = self.route("--from", "a@example.com", "--to", "x@example.com")
        self.assertIn("mailbox: relay@subsidiary.example (senders.override)", out.stdout)
        self.assertIn("by routes[0]", out.stdout)
        self.relay.config["senders"] = {"allowed": ["@example.com"]}
        out = self.route("--from", "a@elsewhere.test", "--to", "x@example.com")
        self.assertEqual(out.returncode, 1)
        self.assertIn("refused", out.stdout)

    def test_a_route_to_an_unknown_provider_is_a_configuration_error(self):
        self.relay.config["routes"] = [{"from": ["@example.com"], "provider": "tenant-c"}]
        self.relay.write_config()
        out = subprocess.run([BINARY, "check-config", "--config", str(self.relay.config_path)],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stdout + out.stderr, r"mailbridge\.yaml:\d+:\d+: routes\[0\]\.provider: no provider "
                                                  r"named 'tenant-c'")


if __name__ == "__main__":
    unittest.main()
