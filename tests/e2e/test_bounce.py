"""A message that cannot be delivered within queue.max_lifetime bounces: the
sender gets a delivery status notification from the null sender, and the
bounce itself is queued and delivered like any message."""

import email
import email.policy
import smtplib
import time
import unittest

from harness import Relay


class BounceTest(unittest.TestCase):
    def test_expired_message_bounces_to_the_sender(self):
        # The breaker would hold the outbox for a minute after five failures.
        relay = Relay(queue={"retry_delay": "1s", "max_retry_delay": "2s", "max_lifetime": "1m",
                             "breaker_failures": 0})
        try:
            relay.outbox.write_text("not a directory")   # every delivery fails, temporarily
            relay.start()
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
                s.sendmail("scanner@example.com", ["alice@example.com"],
                           b"Subject: will expire\r\nFrom: scanner@example.com\r\n\r\nbody\r\n")
            self.assertTrue(relay.wait_log(r"expired after", timeout=120), relay.log())
            self.assertTrue(relay.wait_log(r"bounce \S+ queued to scanner@example.com"), relay.log())
            relay.outbox.unlink()    # the outbox recovers; the bounce goes out on its next retry
            [(eml, meta)] = relay.wait_outbox(1, timeout=30)
            self.assertEqual(meta["sender"], "")
            self.assertEqual(meta["recipients"], ["scanner@example.com"])
            dsn = email.message_from_bytes(eml, policy=email.policy.default)
            self.assertEqual(dsn.get_content_type(), "multipart/report")
            self.assertEqual(dsn.get_param("report-type"), "delivery-status")
            self.assertEqual(dsn["Auto-Submitted"], "auto-replied")
            text = eml.decode("utf-8", "replace")
            self.assertIn("Final-Recipient: rfc822; alice@example.com", text)
            self.assertIn("Status: 5.4.7", text)
            self.assertIn("Subject: will expire", text)
            self.assertEqual(relay.stop(), 0, relay.log())
        finally:
            relay.cleanup()


if __name__ == "__main__":
    unittest.main()
