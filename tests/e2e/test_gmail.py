"""Delivery through the Gmail API: the real binary, real SMTP clients, and
the fake Google token endpoint + Gmail API of tests/fakes over TLS.

A service account with domain-wide delegation acts as each sending user:
small mail as raw base64url, 20 MB as a media upload, over 35 MB refused
before any upload, the envelope deciding who receives it, and each class of
error (throttling retried, the rest refused with the reason in the log)."""

import hashlib
import os
import sys
import shutil
import tempfile
import unittest
from pathlib import Path

from harness import Relay, send_message, split_received

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from fake_google import GMAIL_SEND, FakeGoogle  # noqa: E402
from with_ca import WithTestCA  # noqa: E402

SENDER = "scanner@contoso.example"
ACCOUNT = "relay@mailbridge-test.iam.gserviceaccount.com"
MB = 1024 * 1024


def message(to="alice@example.com", extra=b"", body=b"Scanned page attached.\r\n"):
    return (b"From: Scanner <" + SENDER.encode() + b">\r\nTo: " + to.encode() + b"\r\n" + extra +
            b"Subject: scan\r\nMessage-ID: <gmail-1@contoso.example>\r\n\r\n" + body)


class GmailTest(WithTestCA):
    def setUp(self):
        self.fake = FakeGoogle(ca=self.ca).start()
        self.addCleanup(self.fake.stop)
        self.fake.add_domain("contoso.example")
        self.fake.add_user(SENDER)
        key = self.fake.add_service_account(ACCOUNT)
        self.fake.grant_delegation(key["client_id"], [GMAIL_SEND])
        self.client_id = key["client_id"]
        self.dir = Path(tempfile.mkdtemp(prefix="mb-gmail-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key_file = self.dir / "service-account.json"
        self.fake.write_key_file(self.key_file, ACCOUNT)

    def relay(self, **overrides):
        p = {"name": "gws", "type": "gmail", "service_account_file": str(self.key_file),
             "api_endpoint": self.fake.base_url, "ca_file": self.fake.ca_file}
        overrides.setdefault("queue", {"retry_delay": "1s", "max_retry_delay": "2s"})
        overrides.setdefault("smtp", {"max_message_size": "60MB", "wait_for_delivery": "20s"})
        relay = Relay(providers=[p], **overrides)
        self.addCleanup(relay.cleanup)
        return relay

    def send(self, relay, rcpts, msg=None, sender=SENDER):
        return send_message(relay.port, sender, rcpts, msg if msg is not None else message(), timeout=120)

    def test_small_message_byte_for_byte(self):
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sent.via, "raw")
            self.assertEqual(sent.user.lower(), SENDER)
            _, rest = split_received(sent.raw)
            self.assertEqual(rest, message())
            self.assertEqual(sent.recipients, ["alice@example.com"])
            self.assertEqual(self.fake.token_count(ok=True), 1)
            self.assertEqual(relay.wait_queue_empty(), [])

    def test_the_envelope_decides_who_receives_it(self):
        relay = self.relay()
        with relay:
            msg = message(to="alice@example.com, eve@example.com", extra=b"Bcc: mallory@example.com\r\n")
            code, text = self.send(relay, ["alice@example.com", "bob@example.com"], msg)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1)
            self.assertEqual(sorted(sent.recipients), ["alice@example.com", "bob@example.com"])
            self.assertEqual(sent.bcc, ["bob@example.com"])
            self.assertNotIn(b"mallory@example.com", sent.raw)
            self.assertNotIn(b"eve@example.com", sent.raw)

    def test_20_mb_as_a_media_upload(self):
        data = os.urandom(20 * MB)
        import base64
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
        msg = (b"From: " + SENDER.encode() + b"\r\nTo: alice@example.com\r\nSubject: big\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: application/pdf\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + body)
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com", "bob@example.com"], msg)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=60)
            self.assertEqual(sent.via, "media")
            self.assertEqual(sorted(sent.recipients), ["alice@example.com", "bob@example.com"])
            self.assertEqual(hashlib.sha256(sent.email.get_content()).digest(), hashlib.sha256(data).digest())
            self.assertEqual(list((relay.state_dir / "tmp").iterdir()), [])

    def test_over_35_mb_is_refused_before_any_upload(self):
        msg = message(body=(b"x" * 998 + b"\r\n") * (36 * MB // 1000 + 100))
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"], msg)
            self.assertEqual(code, 552, text)
            self.assertTrue(text.startswith("5.3.4 "), text)
            self.assertEqual(self.fake.requests_to("/upload/"), [])
            self.assertEqual(self.fake.sent, [])

    def test_throttling_is_retried_after_the_time_google_gives(self):
        relay = self.relay(smtp={"wait_for_delivery": "0s"})
        with relay:
            self.fake.fail_next(1, status=429, reason="rateLimitExceeded", retry_after=1)
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.fake.wait_sent(1, timeout=30)
            self.assertTrue(relay.wait_log(r"rateLimitExceeded"))
            self.assertEqual(relay.wait_queue_empty(timeout=15), [])

    def test_permanent_errors_reach_the_client(self):
        relay = self.relay()
        with relay:
            self.fake.fail_next(1, status=400, reason="failedPrecondition", message="Precondition check failed.")
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code // 100, 5, text)
            self.assertTrue(relay.wait_log(r"failedPrecondition"))
            # A sender the domain does not know: the token is refused for it.
            code, text = self.send(relay, ["alice@example.com"], sender="ghost@contoso.example")
            self.assertEqual(code, 550, text)
            self.assertTrue(relay.wait_log(r"Invalid email or User ID|does not exist"))
            self.assertEqual(self.fake.sent, [])

    def test_delegation_not_granted_is_explained(self):
        self.fake.revoke_delegation(self.client_id)
        relay = self.relay()
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 550, text)
            self.assertTrue(relay.wait_log(r"unauthorized_client"))
            self.assertTrue(relay.wait_log(r"[Dd]elegation"))
            self.assertEqual(self.fake.sent, [])


if __name__ == "__main__":
    unittest.main()
