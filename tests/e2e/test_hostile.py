"""Hostile input over raw sockets, each case checked by its exact reply:
smuggling in DATA and BDAT, length edges, limits, slow and early talkers,
connection floods and open-relay probes."""

import socket
import time
import unittest

from harness import Relay, RawClient, split_received

# Sequences that must never end a message or start a second one.
SMUGGLING = [b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n",
             b"\r\n\x00.\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]

INJECTED = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")


def session(port, **kw):
    c = RawClient(port, **kw)
    assert c.code() == 220
    c.send(b"EHLO hostile.test\r\n")
    code, _ = c.reply()
    assert code == 250
    return c


class HostileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.relay = Relay(smtp={"max_message_size": "1MB"}).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.relay.stop()
        cls.relay.cleanup()
        assert rc == 0, f"relay exited with {rc}"

    def delivered_containing(self, needle, count=1):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = [(e, m) for e, m in self.relay.delivered() if needle in e]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        self.fail(f"{count} messages with {needle!r} not delivered:\n" + self.relay.log())

    def assert_no_evil(self):
        for eml, meta in self.relay.delivered():
            self.assertNotEqual(meta["sender"], "evil@example.com")

    def test_smuggling_in_data(self):
        for i, seq in enumerate(SMUGGLING):
            with self.subTest(seq=seq):
                c = session(self.relay.port)
                tag = f"data-smuggle-{i}".encode()
                c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
                self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
                c.send(b"Subject: " + tag + b"\r\n\r\nbefore" + seq + INJECTED + b"after\r\n.\r\n")
                self.assertEqual(c.code(), 250)
                c.send(b"QUIT\r\n")
                self.assertEqual(c.code(), 221, "a smuggled command got a reply")
                [(eml, meta)] = self.delivered_containing(tag)
                body = split_received(eml)[1]
                self.assertIn(b"MAIL FROM:<evil@example.com>", body)
                for k, ch in enumerate(body):
                    if ch == 0x0d:
                        self.assertEqual(body[k + 1:k + 2], b"\n", "bare CR left the relay")
                    if ch == 0x0a:
                        self.assertEqual(body[k - 1:k], b"\r", "bare LF left the relay")
        self.assert_no_evil()

    def test_smuggling_in_bdat(self):
        for i, seq in enumerate(SMUGGLING):
            with self.subTest(seq=seq):
                c = session(self.relay.port)
                tag = f"bdat-smuggle-{i}".encode()
                chunk1 = b"Subject: " + tag + b"\r\n\r\nbefore" + seq
                chunk2 = INJECTED + b".\r\nafter\r\n"
                c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
                self.assertEqual([c.code(), c.code()], [250, 250])
                c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
                self.assertEqual(c.code(), 250)
                c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
                self.assertEqual(c.code(), 250)
                c.send(b"QUIT\r\n")
                self.assertEqual(c.code(), 221)
                [(eml, _)] = self.delivered_containing(tag)
                self.assertIn(b"MAIL FROM:<evil@example.com>", eml)
        self.assert_no_evil()

    def test_data_after_bdat_and_oversized_chunk(self):
        c = session(self.relay.port)
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 5\r\nhello")
        self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 250])
        c.send(b"DATA\r\n")
        self.assertEqual(c.code(), 503)
        c.send(b"RSET\r\n")
        self.assertEqual(c.code(), 250)
        big = b"x" * (1024 * 1024 + 10)
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        self.assertEqual([c.code(), c.code()], [250, 250])
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        code, lines = c.reply()
        self.assertEqual(code, 552)
        self.assertTrue(lines[0].startswith("552 5.3.4"))
        c.send(b"NOOP\r\n")
        self.assertEqual(c.code(), 250, "the oversized chunk was not consumed whole")
        c.close()

    def test_command_line_length_edges(self):
        c = session(self.relay.port)
        for total, expected in ((511, 250), (512, 250), (513, 500)):
            line = b"NOOP " + b"x" * (total - 7) + b"\r\n"
            self.assertEqual(len(line), total)
            c.send(line)
            code, lines = c.reply()
            self.assertEqual(code, expected, (total, lines))
            if expected == 500:
                self.assertTrue(lines[0].startswith("500 5.5.6"), lines)
        c.send(b"NOOP\r\n")
        self.assertEqual(c.code(), 250)
        c.close()

    def test_text_line_length_edges(self):
        for total, expected in ((999, 250), (1000, 250), (1001, 500)):
            with self.subTest(total=total):
                c = session(self.relay.port)
                c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
                self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
                c.send(b"Subject: len\r\n\r\n" + b"y" * (total - 2) + b"\r\n.\r\n")
                code, lines = c.reply()
                self.assertEqual(code, expected, lines)
                if expected == 500:
                    self.assertTrue(lines[0].startswith("500 5.5.6"), lines)
                c.close()

    def test_local_part_length(self):
        c = session(self.relay.port)
        c.send(b"MAIL FROM:<a@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"RCPT TO:<" + b"l" * 64 + b"@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"RCPT TO:<" + b"l" * 65 + b"@example.com>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 553)
        self.assertTrue(lines[0].startswith("553 5.1.3"), lines)
        c.close()

    def test_501_recipients(self):
        c = session(self.relay.port)
        c.send(b"MAIL FROM:<a@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"".join(b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(501)))
        codes = [c.reply() for _ in range(501)]
        self.assertTrue(all(code == 250 for code, _ in codes[:500]))
        self.assertEqual(codes[500][0], 452)
        self.assertTrue(codes[500][1][0].startswith("452 4.5.3"))
        c.send(b"DATA\r\n")
        self.assertEqual(c.code(), 354)
        c.send(b"Subject: five hundred\r\n\r\n500 recipients\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        [(_, meta)] = self.delivered_containing(b"500 recipients")
        self.assertEqual(len(meta["recipients"]), 500)
        c.close()

    def test_nul_in_command_and_null_sender(self):
        c = session(self.relay.port)
        c.send(b"NO\x00OP\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 500)
        c.send(b"MAIL FROM:<>\r\n")
        self.assertEqual(c.code(), 250, "the null sender must be accepted")
        c.close()

    def test_open_relay_probe_from_a_network_not_allowed(self):
        # 127.0.0.5 is this machine too, but not in allowed_networks.
        with Relay(access={"allowed_networks": ["127.0.0.1/32"],
                           "anonymous_networks": ["127.0.0.1/32"]}) as relay:
            probe = RawClient(relay.port, source="127.0.0.5")
            code, lines = probe.reply()
            self.assertEqual(code, 554)
            self.assertTrue(lines[0].startswith("554 5.7.1"))
            self.assertTrue(probe.closed())
            # Allowed to connect but not to relay without AUTH: the classic
            # probes all stop at MAIL.
            with Relay(access={"allowed_networks": ["127.0.0.0/8"],
                               "anonymous_networks": ["127.0.0.1/32"]}) as inner:
                for rcpt in (b"<victim@external.example>", b"<victim%external.example@relay.test>",
                             b"<@relay.test:victim@external.example>", b"<\"victim@external\">"):
                    c = session(inner.port, source="127.0.0.5")
                    c.send(b"MAIL FROM:<spammer@example.com>\r\n")
                    code, lines = c.reply()
                    self.assertEqual(code, 530, (rcpt, lines))
                    c.send(b"RCPT TO:" + rcpt + b"\r\n")
                    self.assertEqual(c.code(), 503)
                    c.close()
                self.assertEqual(inner.outbox_files(), [])


class LimitsTest(unittest.TestCase):
    def test_connections_from_one_address(self):
        with Relay(smtp={"max_connections_per_ip": 20, "max_connections": 500}) as relay:
            socks, codes = [], []
            for _ in range(200):
                c = RawClient(relay.port)
                socks.append(c)
                codes.append(c.code())
            self.assertEqual(codes.count(220), 20)
            self.assertEqual(codes.count(421), 180)
            for c in socks:
                c.close()

    def test_idle_client_is_disconnected(self):
        with Relay(smtp={"idle_timeout": "1s"}) as relay:
            c = session(relay.port)
            start = time.monotonic()
            code, lines = c.reply()
            self.assertEqual(code, 421)
            self.assertTrue(lines[0].startswith("421 4.4.2"), lines)
            self.assertLess(time.monotonic() - start, 5)

    def test_slow_client_in_data(self):
        with Relay(smtp={"data_timeout": "2s", "min_data_rate": "500B"}) as relay:
            c = session(relay.port)
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
            start = time.monotonic()
            c.sock.settimeout(0.05)
            got = b""
            while time.monotonic() - start < 10 and b"\r\n" not in got:
                try:
                    c.sock.sendall(b"z")
                except OSError:
                    break
                try:
                    got += c.sock.recv(1000)
                except socket.timeout:
                    pass
                time.sleep(0.2)
            self.assertTrue(got.startswith(b"421 4.4.2"), got)
            self.assertLess(time.monotonic() - start, 6)
            self.assertEqual(relay.outbox_files(), [])

    def test_talking_before_the_greeting(self):
        with Relay(smtp={"greeting_delay": "500ms"}) as relay:
            c = RawClient(relay.port)
            c.send(b"EHLO early.test\r\nMAIL FROM:<a@example.com>\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 554)
            self.assertTrue(lines[0].startswith("554 5.5.0"), lines)
            self.assertTrue(c.closed())
            polite = RawClient(relay.port)
            self.assertEqual(polite.code(), 220)

    def test_bare_lf_reject_mode(self):
        with Relay(smtp={"bare_lf": "reject"}) as relay:
            c = session(relay.port)
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
            c.send(b"Subject: lf\r\n\r\nunix line\nend\r\n.\r\n")
            code, lines = c.reply()
            self.assertEqual(code, 550)
            self.assertTrue(lines[0].startswith("550 5.5.2"), lines)


if __name__ == "__main__":
    unittest.main()
