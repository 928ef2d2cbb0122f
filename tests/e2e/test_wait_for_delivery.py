"""smtp.wait_for_delivery: after the final dot the relay waits for the first
delivery attempt and answers with its result — 250 "delivered" when it went
out, the provider's 5xx when it was refused (nothing left in the queue and no
bounce), 250 "queued" when it was deferred or the wait ran out."""

import smtplib
import time
import unittest

from harness import Relay

MSG = b"From: scanner@example.com\r\nTo: someone\r\nSubject: wait\r\n\r\nbody\r\n"


def send(relay, rcpts, sender="scanner@example.com", msg=MSG):
    """Returns (code, text) of the reply to the final dot."""
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as s:
        s.ehlo("device.test")
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250, code
        s.putcmd("data")
        code, _ = s.getreply()
        assert code == 354, code
        s.send(msg + b".\r\n")
        code, text = s.getreply()
        return code, text.decode()


def outbox_refusing(relay, *patterns):
    relay.config["providers"][0]["refuse_recipients"] = list(patterns)


class WaitForDeliveryTest(unittest.TestCase):
    def test_delivered_answer_names_the_delivery(self):
        with Relay() as relay:     # the default wait, 10 s
            code, text = send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertRegex(text, r"^2\.0\.0 Ok: delivered as \S+\.eml, queue id \w+$")
            # Delivered before the reply: the outbox has it now; the queue
            # lets go of it just after.
            self.assertEqual(len(relay.delivered()), 1)
            self.assertEqual(relay.wait_queue_empty(), [])

    def test_refusal_reaches_the_client_and_nothing_stays_queued(self):
        relay = Relay(queue={"retry_delay": "1s", "max_retry_delay": "1s"})
        outbox_refusing(relay, "@refused.example")
        with relay:
            code, text = send(relay, ["nobody@refused.example", "other@REFUSED.example"])
            self.assertEqual(code, 550, text)
            self.assertEqual(text, "5.1.1 Message refused: recipient refused by the outbox's "
                                   "refuse_recipients rule")
            self.assertTrue(relay.wait_log(r"refused to the waiting client, no bounce"), relay.log())
            self.assertEqual(relay.wait_queue_empty(), [])
            time.sleep(1.5)        # a bounce would be written by now
            self.assertEqual(relay.delivered(), [])
            self.assertNotRegex(relay.log(), r"bounce \S+ queued")

    def test_partly_refused_message_is_delivered_and_bounces_the_rest(self):
        relay = Relay()
        outbox_refusing(relay, "nobody@example.com")
        with relay:
            code, text = send(relay, ["alice@example.com", "nobody@example.com"])
            self.assertEqual(code, 250, text)
            self.assertIn("delivered", text)
            # The original and the bounce for the refused recipient.
            delivered = relay.wait_outbox(2)
            senders = sorted(meta["sender"] for _, meta in delivered)
            self.assertEqual(senders, ["", "scanner@example.com"])

    def test_deferred_attempt_answers_queued_and_the_queue_delivers_later(self):
        relay = Relay(queue={"retry_delay": "1s", "max_retry_delay": "1s", "breaker_failures": 0})
        try:
            relay.outbox.write_text("not a directory")   # the attempt fails temporarily
            relay.start()
            started = time.monotonic()
            code, text = send(relay, ["alice@example.com"])
            self.assertLess(time.monotonic() - started, 5)  # answered at the verdict, not the wait's end
            self.assertEqual(code, 250, text)
            self.assertRegex(text, r"^2\.0\.0 Ok: queued as \w+$")
            self.assertEqual(len(relay.queued_ids()), 1)
            relay.outbox.unlink()
            self.assertEqual(len(relay.wait_outbox(1)), 1)
            self.assertEqual(relay.stop(), 0, relay.log())
        finally:
            relay.cleanup()

    def test_wait_runs_out_then_250_queued_and_delivery_follows(self):
        # One message a minute per mailbox: the second message's first attempt
        # waits for the pacing window, longer than the client is kept waiting.
        relay = Relay(smtp={"wait_for_delivery": "1500ms"},
                      queue={"max_per_minute_per_mailbox": 1})
        try:
            relay.start()
            code, text = send(relay, ["alice@example.com"])
            self.assertIn("delivered", text)
            started = time.monotonic()
            code, text = send(relay, ["bob@example.com"])
            waited = time.monotonic() - started
            self.assertEqual(code, 250, text)
            self.assertRegex(text, r"^2\.0\.0 Ok: queued as \w+$")
            self.assertGreaterEqual(waited, 1.4)
            self.assertLess(waited, 5)
            self.assertTrue(relay.wait_log(r"no delivery result within the wait"), relay.log())
            self.assertEqual(len(relay.queued_ids()), 1)
            # A restart forgets the pacing window; the queued message goes out.
            self.assertEqual(relay.stop(), 0, relay.log())
            relay.start()
            self.assertEqual(len(relay.wait_outbox(2)), 2)
            self.assertEqual(relay.stop(), 0, relay.log())
        finally:
            relay.cleanup()

    def test_zero_turns_the_wait_off(self):
        with Relay(smtp={"wait_for_delivery": "0s"}) as relay:
            code, text = send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertRegex(text, r"^2\.0\.0 Ok: queued as \w+$")
            self.assertEqual(len(relay.wait_outbox(1)), 1)


if __name__ == "__main__":
    unittest.main()
