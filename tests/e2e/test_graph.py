"""Delivery through Microsoft Graph: the real binary, real SMTP clients, and
the fake Entra ID + Graph of tests/fakes over TLS with a test CA.

Covers the sendMail path (messages up to about 3 MB): bytes preserved, the
envelope deciding who receives the mail, client-secret and certificate
tokens, a 401 answered with one refresh, throttling, the permanent errors
seen by the client (wait_for_delivery) and a credential problem that keeps
mail queued until it is fixed."""

import re
import time
import unittest
from pathlib import Path

from harness import Relay, send_message, split_received
from microsoft import CLIENT, SENDER, TENANT, MicrosoftTestCase

SECRET = "Qm8~graph-test-secret-value-0123"


def message(to="alice@example.com", extra=b"", body=b"Scanned page attached.\r\n"):
    return (b"From: Scanner <" + SENDER.encode() + b">\r\nTo: " + to.encode() + b"\r\n" + extra +
            b"Subject: scan\r\nMessage-ID: <scan-1@contoso.example>\r\n\r\n" + body)


class GraphTest(MicrosoftTestCase):
    def setUp(self):
        super().setUp()
        self.fake.add_app(TENANT, CLIENT, secret=SECRET)

    def relay(self, provider=None, **overrides):
        p = self.graph_provider(SECRET, **(provider or {}))
        overrides.setdefault("queue", {"retry_delay": "1s", "max_retry_delay": "2s"})
        relay = Relay(providers=[p], **overrides)
        self.addCleanup(relay.cleanup)
        return relay

    def send(self, relay, rcpts, msg=None, sender=SENDER):
        """The (code, text) of the answer to the final dot."""
        return send_message(relay.port, sender, rcpts, msg if msg is not None else message())

    def test_small_message_byte_for_byte(self):
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertIn("delivered", text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sent.kind, "mime")
            self.assertEqual(sent.mailbox.lower(), SENDER)
            received, rest = split_received(sent.mime)
            self.assertEqual(rest, message())
            self.assertIn(b"by relay.test", received)
            self.assertEqual(sorted(sent.recipients), ["alice@example.com"])
            self.assertEqual(relay.wait_queue_empty(), [])
            # The secret went to the token endpoint, never to the log.
            self.assertNotIn(SECRET, relay.log())
            self.assertEqual(self.fake.token_count("client_credentials", ok=True), 1)

    def test_the_envelope_decides_who_receives_it(self):
        relay = self.relay()
        with relay:
            msg = message(to="alice@example.com, eve@example.com",
                          extra=b"Bcc: mallory@example.com\r\n")
            code, text = self.send(relay, ["alice@example.com", "bob@example.com"], msg)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sorted(sent.recipients), ["alice@example.com", "bob@example.com"])
            self.assertEqual(sent.bcc, ["bob@example.com"])
            self.assertNotIn(b"eve@example.com", sent.mime)
            self.assertNotIn(b"mallory@example.com", sent.mime)
            self.assertIn(b"\r\n\r\nScanned page attached.\r\n", sent.mime)

    def test_certificate_credentials(self):
        cert = self.ca.make_client_cert("mailbridge-app")
        self.fake.add_app(TENANT, CLIENT, cert_pem=cert.cert_pem)
        relay = self.relay({"client_secret": None, "cert_file": str(cert.cert_file),
                            "key_file": str(cert.key_file)})
        del relay.config["providers"][0]["client_secret"]
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.fake.wait_sent(1)
            self.assertIn("certificate", relay.log())

    def test_an_expired_token_is_refreshed_once(self):
        relay = self.relay()
        with relay:
            self.assertEqual(self.send(relay, ["alice@example.com"])[0], 250)
            self.fake.expire_tokens()
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertIn("delivered", text)
            self.assertEqual(len(self.fake.wait_sent(2)), 2)
            self.assertEqual(self.fake.token_count("client_credentials", ok=True), 2)
            self.assertTrue(relay.wait_log(r"refused the access token \(401\); fetching a new one"))

    def test_threads_carry_the_names_the_documentation_gives(self):
        # The second message finds the token cached and is sent without a
        # worker; the first fetched it on one. Both ways show in the threads.
        relay = self.relay()
        with relay:
            for _ in range(2):
                self.assertEqual(self.send(relay, ["alice@example.com"])[0], 250)
            self.assertEqual(len(self.fake.wait_sent(2)), 2)
            self.assertEqual(self.fake.token_count("client_credentials", ok=True), 1)
            tasks = Path(f"/proc/{relay.proc.pid}/task")
            names = {(t / "comm").read_text().strip() for t in tasks.iterdir()}
        table = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
        section = table.split("### Which part uses the CPU", 1)[1].split("\n## ", 1)[0]
        documented = set()
        for row in section.splitlines():
            if row.startswith("| `"):
                documented.update(re.findall(r"`([^`]+)`", row.split("|")[1]))
        self.assertLessEqual(names, documented, "every thread is in docs/operations.md")
        self.assertLessEqual({"mailbridge", "mb-spool-commit", "mb-spool-sync", "mb-queue", "mb-graph",
                              "mb-graph-done", "mb-http", "mb-tracker"}, names)

    def test_permanent_errors_reach_the_client(self):
        self.fake.add_user(TENANT, "nobox@contoso.example", mailbox=False)
        self.fake.deny_send_as(SENDER)
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith("5.7.60 "), text)
            self.assertIn("sender not allowed to send as this mailbox", text)
            code, text = self.send(relay, ["alice@example.com"], sender="ghost@contoso.example")
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith("5.1.8 "), text)
            code, text = self.send(relay, ["alice@example.com"], sender="nobox@contoso.example")
            self.assertEqual(code, 550, text)
            self.assertIn("no Exchange Online mailbox", text)
            self.assertEqual(relay.wait_queue_empty(), [])
            self.assertEqual(self.fake.sent, [])

    def test_each_permanent_graph_error_gets_its_reply(self):
        cases = [(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.", 550, "5.7.1"),
                 (400, "ErrorInvalidRecipients", "At least one recipient is not valid.", 550, "5.1.3"),
                 (400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.",
                  554, "5.6.0"),
                 (413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.",
                  552, "5.3.4")]
        relay = self.relay()
        with relay:
            for status, code_name, message_text, smtp_code, enhanced in cases:
                with self.subTest(code=code_name):
                    self.fake.fail_next(1, status=status, code=code_name, message=message_text)
                    code, text = self.send(relay, ["alice@example.com"])
                    self.assertEqual(code, smtp_code, text)
                    self.assertTrue(text.startswith(enhanced + " "), text)
                    self.assertNotIn(code_name, text)   # Graph's words go to the log
                    self.assertTrue(relay.wait_log(code_name))
            self.assertEqual(relay.wait_queue_empty(), [])
            self.assertEqual(self.fake.sent, [])

    def test_permanent_error_after_the_wait_becomes_a_bounce(self):
        self.fake.deny_send_as(SENDER)
        self.fake.add_user(TENANT, "postmaster@contoso.example")
        relay = self.relay(smtp={"wait_for_delivery": "0s"},
                           queue={"retry_delay": "1s", "max_retry_delay": "2s",
                                  "bounce_from": "postmaster@contoso.example"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertIn("queued", text)
            # The bounce (null sender) goes back through Graph to the sender,
            # sent as the mailbox of queue.bounce_from, and names the reason.
            self.assertTrue(relay.wait_log(r"bounce \S+ queued to <?scanner@contoso.example"), relay.log())
            [bounce] = self.fake.wait_sent(1, timeout=20)
            self.assertEqual(bounce.mailbox.lower(), "postmaster@contoso.example")
            self.assertEqual(sorted(bounce.recipients), [SENDER])
            self.assertIn(b"multipart/report", bounce.mime)
            self.assertIn(b"5.7.60", bounce.mime)

    def test_throttling_and_outages_are_retried(self):
        self.fake.fail_next(1, status=429, code="ApplicationThrottled",
                            message="Application is over its MailboxConcurrency limit.", retry_after=1)
        self.fake.fail_next(1, status=503)
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertIn("queued", text)
            self.fake.wait_sent(1, timeout=30)
            self.assertEqual(relay.wait_queue_empty(), [])
            self.assertRegex(relay.log(), r"Graph 429 ApplicationThrottled")

    def test_an_outage_loses_nothing_and_sends_nothing_twice(self):
        # Graph down for a while: every request fails, the breaker opens and
        # probes; when it is back, every message goes out exactly once.
        self.fake.fail_next(1000, status=503)
        relay = self.relay(queue={"retry_delay": "1s", "max_retry_delay": "2s",
                                  "breaker_failures": 3, "breaker_cooldown": "1s"})
        with relay:
            subjects = []
            for i in range(8):
                subject = f"outage {i}"
                subjects.append(subject)
                msg = message().replace(b"Subject: scan", b"Subject: " + subject.encode())
                code, text = self.send(relay, ["alice@example.com"], msg)
                self.assertEqual(code, 250, text)
                self.assertIn("queued", text)
            self.assertTrue(relay.wait_log(r"circuit open"), relay.log())
            self.assertEqual(self.fake.sent, [])
            self.fake.clear_faults()
            self.fake.wait_sent(8, timeout=60)
            self.assertEqual(relay.wait_queue_empty(30), [])
            time.sleep(1)
            self.assertEqual(sorted(m.subject for m in self.fake.sent), sorted(subjects))

    def test_wrong_secret_keeps_mail_queued_until_fixed(self):
        relay = self.relay({"client_secret": "the-secret-id-not-its-value"})
        relay.start()
        code, text = self.send(relay, ["alice@example.com"])
        self.assertEqual(code, 250, text)
        self.assertIn("queued", text)
        self.assertTrue(relay.wait_log(r"7000215"), relay.log())
        self.assertRegex(relay.log(), r"secret ID was pasted|secret's ID|instead of (its|the) value")
        self.assertEqual(self.fake.sent, [])
        self.assertEqual(len(relay.queued_ids()), 1)
        self.assertNotIn("the-secret-id-not-its-value", relay.log())
        self.assertEqual(relay.stop(), 0, relay.log())
        # Fixed in the configuration, and a restart: it goes out.
        relay.config["providers"][0]["client_secret"] = SECRET
        relay.restart()
        self.fake.wait_sent(1, timeout=30)
        self.assertEqual(relay.wait_queue_empty(), [])
        self.assertEqual(relay.stop(), 0, relay.log())


    def test_the_from_header_can_name_the_mailbox(self):
        self.fake.add_user(TENANT, "floor2@contoso.example")
        relay = self.relay(senders={"use_from_header": True, "allowed": ["@contoso.example"]})
        with relay:
            # A copier's From: a display name with '@' and a comma, folded.
            folded = (b"From: \"Scan, floor 2 (a@b)\"\r\n <floor2@contoso.example>\r\n"
                      b"To: alice@example.com\r\nSubject: scan\r\n\r\npage\r\n")
            code, text = self.send(relay, ["alice@example.com"], folded)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sent.mailbox.lower(), "floor2@contoso.example")
            # No From header: MAIL FROM decides.
            bare = b"To: alice@example.com\r\nSubject: no from\r\n\r\npage\r\n"
            code, text = self.send(relay, ["alice@example.com"], bare)
            self.assertEqual(code, 250, text)
            self.assertEqual(self.fake.wait_sent(2)[1].mailbox.lower(), SENDER)
            # A From outside the allowed senders is refused at the final dot,
            # so no device reaches another mailbox by writing another From.
            forged = b"From: ceo@other.example\r\nTo: alice@example.com\r\nSubject: x\r\n\r\nx\r\n"
            code, text = self.send(relay, ["alice@example.com"], forged)
            self.assertEqual((code, text), (550, "5.7.1 From address not allowed"))
            self.assertTrue(relay.wait_log(r"From header address <ceo@other.example> not in senders.allowed"))
            self.assertEqual(len(self.fake.sent), 2)
            self.assertEqual(relay.wait_queue_empty(), [])

    def test_an_override_beats_the_from_header(self):
        self.fake.add_user(TENANT, "relay@contoso.example")
        self.fake.grant_send_as("relay@contoso.example", SENDER)
        relay = self.relay(senders={"use_from_header": True, "override": "relay@contoso.example"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sent.mailbox.lower(), "relay@contoso.example")


if __name__ == "__main__":
    unittest.main()
