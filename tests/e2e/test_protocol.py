"""The relay's SMTP behaviour over a real socket: pipelining, access policy
at connect and at MAIL, and a clean stop."""

import unittest

from harness import Relay, RawClient, split_received


class ProtocolTest(unittest.TestCase):
    def test_fully_pipelined_session(self):
        with Relay() as relay:
            c = RawClient(relay.port)
            self.assertEqual(c.code(), 220)
            c.send(b"EHLO pipe.test\r\n")
            code, lines = c.reply()
            self.assertIn("250-PIPELINING", lines)
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                   b"RCPT TO:<c@example.com>\r\nDATA\r\n")
            self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
            c.send(b"Subject: p1\r\n\r\none\r\n.\r\n"
                   b"MAIL FROM:<a@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n")
            self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
            c.send(b"Subject: p2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
            self.assertEqual([c.code(), c.code()], [250, 221])
            self.assertTrue(c.closed())
            got = sorted(split_received(e)[1] for e, _ in relay.wait_outbox(2))
            self.assertEqual(got, [b"Subject: p1\r\n\r\none\r\n", b"Subject: p2\r\n\r\ntwo\r\n"])

    def test_smuggled_end_of_data_is_content(self):
        with Relay() as relay:
            c = RawClient(relay.port)
            c.code()
            c.send(b"HELO old.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
            c.send(b"Subject: s\r\n\r\nline\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n")
            self.assertEqual(c.code(), 250)
            c.send(b"QUIT\r\n")
            self.assertEqual(c.code(), 221)
            [(eml, meta)] = relay.wait_outbox(1)
            rest = split_received(eml)[1]
            self.assertIn(b"MAIL FROM:<evil@example.com>\r\n", rest)
            self.assertNotIn(b"\n.\n", rest)
            self.assertEqual(meta["sender"], "a@example.com")

    def test_connect_from_a_network_not_allowed(self):
        with Relay(access={"allowed_networks": ["192.0.2.0/24"],
                           "anonymous_networks": ["192.0.2.0/24"]}) as relay:
            c = RawClient(relay.port)
            code, lines = c.reply()
            self.assertEqual(code, 554)
            self.assertTrue(lines[0].startswith("554 5.7.1"), lines)
            self.assertTrue(c.closed())

    def test_mail_from_a_network_that_must_authenticate(self):
        with Relay(access={"allowed_networks": ["127.0.0.0/8"],
                           "anonymous_networks": ["192.0.2.0/24"]}) as relay:
            c = RawClient(relay.port)
            self.assertEqual(c.code(), 220)
            c.send(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\n")
            self.assertEqual(c.code(), 250)
            code, lines = c.reply()
            self.assertEqual(code, 530)
            self.assertTrue(lines[0].startswith("530 5.7.0"), lines)

    def test_stop_answers_421_to_an_idle_session(self):
        relay = Relay()
        try:
            relay.start()
            c = RawClient(relay.port)
            self.assertEqual(c.code(), 220)
            c.send(b"EHLO idle.test\r\n")
            self.assertEqual(c.code(), 250)
            self.assertEqual(relay.stop(), 0, relay.log())
            code, lines = c.reply()
            self.assertEqual(code, 421)
            self.assertTrue(lines[0].startswith("421 4.3.2"), lines)
        finally:
            relay.cleanup()


if __name__ == "__main__":
    unittest.main()
