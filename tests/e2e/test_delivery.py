"""Mail sent by real clients (Python's smtplib, swaks) arrives in the outbox
byte for byte, behind exactly one Received: header of ours."""

import email.message
import email.policy
import os
import shutil
import smtplib
import time
import subprocess
import unittest

from harness import Relay, RawClient, split_received


def plain_message(subject="hello", body=b"Hello from the e2e test.\r\n"):
    return (b"From: Scanner <scanner@example.com>\r\n"
            b"To: Alice <alice@example.com>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <e2e-" + subject.encode() + b"@example.com>\r\n"
            b"\r\n" + body)


class DeliveryTest(unittest.TestCase):
    def setUp(self):
        self.relay = Relay(smtp={"max_message_size": "64KB", "max_recipients": 5}).start()

    def tearDown(self):
        rc = self.relay.stop()
        try:
            self.assertEqual(rc, 0, self.relay.log())
        finally:
            self.relay.cleanup()

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.relay.port, local_hostname="client.test", timeout=10)

    def test_one_recipient_byte_for_byte(self):
        msg = plain_message("one")
        with self.smtp() as s:
            self.assertEqual(s.sendmail("scanner@example.com", ["alice@example.com"], msg), {})
        [(eml, meta)] = self.relay.wait_outbox(1)
        received, rest = split_received(eml)
        self.assertEqual(rest, msg)
        self.assertIn(b"from client.test (127.0.0.1)", received)
        self.assertIn(b"by relay.test", received)
        self.assertIn(b"for <alice@example.com>", received)
        self.assertEqual(meta["sender"], "scanner@example.com")
        self.assertEqual(meta["recipients"], ["alice@example.com"])
        self.assertEqual(self.relay.wait_queue_empty(), [], "delivered message left in the queue")

    def test_many_recipients(self):
        rcpts = [f"user{i}@example.com" for i in range(5)]
        with self.smtp() as s:
            self.assertEqual(s.sendmail("scanner@example.com", rcpts, plain_message("many")), {})
        [(eml, meta)] = self.relay.wait_outbox(1)
        self.assertEqual(meta["recipients"], rcpts)
        received, rest = split_received(eml)
        self.assertNotIn(b"for <", received, "for clause only with a single recipient")
        self.assertEqual(rest, plain_message("many"))

    def test_multipart_with_attachment(self):
        m = email.message.EmailMessage(policy=email.policy.SMTP)
        m["From"] = "erp@example.com"
        m["To"] = "bob@example.com"
        m["Subject"] = "Invoice"
        m.set_content("Please find the invoice attached.\n")
        m.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="pdf",
                         filename="invoice.pdf")
        raw = m.as_bytes()
        self.assertIn(b"\r\n", raw)
        with self.smtp() as s:
            s.sendmail("erp@example.com", ["bob@example.com"], raw)
        [(eml, _)] = self.relay.wait_outbox(1)
        _, rest = split_received(eml)
        self.assertEqual(rest, raw)
        parsed = email.message_from_bytes(rest, policy=email.policy.default)
        [att] = list(parsed.iter_attachments())
        self.assertEqual(att.get_content(), bytes(range(256)) * 40)

    def test_lines_starting_with_a_dot(self):
        body = b".hidden line\r\n..two dots\r\n.\r\nx\r\n. space\r\n"
        msg = plain_message("dots", body)
        with self.smtp() as s:
            s.sendmail("a@example.com", ["b@example.com"], msg)   # smtplib dot-stuffs
        [(eml, _)] = self.relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], msg)

    def test_over_size_limit_at_mail(self):
        big = plain_message("big", b"x" * 998 + b"\r\n") * 100   # ~100 KB > 64 KB
        with self.smtp() as s:
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("a@example.com", ["b@example.com"], big)   # SIZE= declared
            self.assertEqual(cm.exception.smtp_code, 552)
        self.assertEqual(self.relay.outbox_files(), [])

    def test_over_size_limit_in_data(self):
        c = RawClient(self.relay.port)
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO client.test\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertIn("250-SIZE 65536", lines)
        c.send(b"MAIL FROM:<a@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"RCPT TO:<b@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"DATA\r\n")
        self.assertEqual(c.code(), 354)
        c.send((b"y" * 998 + b"\r\n") * 100 + b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 552, lines)
        self.assertTrue(lines[0].startswith("552 5.3.4"), lines)
        # The session goes on: a small message after the refusal is accepted.
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
        c.send(b"Subject: small\r\n\r\nsmall\r\n.\r\n")
        self.assertEqual(c.code(), 250)
        c.send(b"QUIT\r\n")
        self.assertEqual(c.code(), 221)
        c.close()
        [(eml, _)] = self.relay.wait_outbox(1)
        self.assertEqual(split_received(eml)[1], b"Subject: small\r\n\r\nsmall\r\n")
        # The delivered one leaves the spool a moment after its .eml is
        # written; the refused one never entered it.
        self.assertEqual(self.relay.wait_queue_empty(), [])
        deadline = time.monotonic() + 10
        while list((self.relay.state_dir / "queue").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(list((self.relay.state_dir / "queue").iterdir()), [],
                         "refused message left files in the spool")

    def test_too_many_recipients(self):
        rcpts = [f"r{i}@example.com" for i in range(7)]
        with self.smtp() as s:
            refused = s.sendmail("a@example.com", rcpts, plain_message("limit"))
        self.assertEqual(sorted(refused), sorted(rcpts[5:]))
        for code, text in refused.values():
            self.assertEqual(code, 452)
            self.assertTrue(text.startswith(b"4.5.3"), text)
        [(_, meta)] = self.relay.wait_outbox(1)
        self.assertEqual(meta["recipients"], rcpts[:5])


@unittest.skipUnless(shutil.which("swaks"), "swaks is not installed (scripts/install-deps)")
class SwaksTest(unittest.TestCase):
    def test_swaks_exact_bytes(self):
        with Relay() as relay:
            data = relay.dir / "message.eml"
            msg = plain_message("swaks", b"Sent with swaks.\r\n.leading dot\r\n")
            # swaks ends the data with its own CRLF before the dot.
            data.write_bytes(msg[:-2])
            out = subprocess.run(
                ["swaks", "--server", f"127.0.0.1:{relay.port}", "--helo", "swaks.test",
                 "--from", "printer@example.com", "--to", "carol@example.com,dave@example.com",
                 "--data", f"@{data}"],
                capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("250 2.0.0", out.stdout)
            [(eml, meta)] = relay.wait_outbox(1)
            self.assertEqual(split_received(eml)[1], msg)
            self.assertEqual(meta["recipients"], ["carol@example.com", "dave@example.com"])

    def test_swaks_pipelining(self):
        with Relay() as relay:
            out = subprocess.run(
                ["swaks", "--server", f"127.0.0.1:{relay.port}", "--pipeline",
                 "--from", "a@example.com", "--to", "b@example.com",
                 "--header", "Subject: pipelined", "--body", "pipelined body"],
                capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            [(eml, _)] = relay.wait_outbox(1)
            self.assertIn(b"Subject: pipelined\r\n", eml)
            self.assertIn(b"pipelined body", eml)


if __name__ == "__main__":
    unittest.main()
