"""The fake upstream SMTP server (tests/fakes/fake_smtp_server.py) speaks
ESMTP as a strict smarthost does and records what a client does wrong, so
that the relay's end-to-end tests against it mean something. Python's
smtplib for well-behaved clients, raw sockets for exact bytes; no relay."""

import base64
import json
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest
from pathlib import Path

FAKES = Path(__file__).resolve().parents[1] / "fakes"
sys.path.insert(0, str(FAKES))

from fake_smtp_server import DROP_STAGES, FakeSmtpServer  # noqa: E402
from test_ca import TestCA  # noqa: E402

USER = "relay@example.com"
PASSWORD = "correct horse battery"
TOKEN = "ya29.a0AfH6SMC-fake-access-token"
SENDER = "relay@example.com"
MESSAGE = (b"From: Relay <relay@example.com>\r\n"
           b"To: alice@example.net\r\n"
           b"Subject: test\r\n"
           b"Message-ID: <t1@example.com>\r\n"
           b"\r\n"
           b"Hello.\r\n")

CA = None


def setUpModule():
    global CA
    CA = TestCA()


def tearDownModule():
    CA.cleanup()


def xoauth2(user, token):
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


class Raw:
    """An SMTP client on a raw socket: sends exactly the bytes it is given."""

    def __init__(self, port, implicit_ctx=None, greeting=True, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_ctx is not None:
            self.sock = implicit_ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.buf = b""
        self.greeting = self.reply() if greeting else None

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def reply(self):
        """(code, [text lines])."""
        texts = []
        while True:
            line = self._line()
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self, ctx):
        code, _ = self.cmd("STARTTLS")
        assert code == 220, code
        self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def is_closed(self, timeout=3):
        """True if the server closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class FakeSmtpTestBase(unittest.TestCase):
    fake_args = {}

    def setUp(self):
        self.fake = self.make_fake(**self.fake_args)
        self.ctx = CA.client_context()

    def make_fake(self, **kwargs):
        fake = FakeSmtpServer(ca=CA, **kwargs).start()
        self.addCleanup(fake.stop)
        fake.add_user(USER, PASSWORD)
        fake.add_oauth_token(USER, TOKEN)
        return fake

    def smtp(self, fake=None, tls=True, login=True):
        fake = fake or self.fake
        if fake.mode == "implicit":
            s = smtplib.SMTP_SSL("127.0.0.1", fake.port, local_hostname="client.test",
                                 timeout=5, context=self.ctx)
        else:
            s = smtplib.SMTP("127.0.0.1", fake.port, local_hostname="client.test", timeout=5)
        self.addCleanup(s.close)
        s.ehlo()
        if tls and fake.mode == "starttls":
            s.starttls(context=self.ctx)
            s.ehlo()
        if login:
            s.login(USER, PASSWORD)
        return s

    def raw(self, fake=None, **kwargs):
        r = Raw((fake or self.fake).port, **kwargs)
        self.addCleanup(r.close)
        return r

    def raw_tls(self, fake=None):
        """Raw client after EHLO, STARTTLS, EHLO."""
        r = self.raw(fake)
        r.cmd("EHLO client.test")
        r.starttls(self.ctx)
        self.assertEqual(r.cmd("EHLO client.test")[0], 250)
        return r

    def kinds(self, fake=None):
        return (fake or self.fake).violation_kinds()


# --------------------------------------------------------------------------


class TlsAndAuthTest(FakeSmtpTestBase):

    def test_starttls_then_auth_plain(self):
        s = smtplib.SMTP("127.0.0.1", self.fake.port, local_hostname="client.test", timeout=5)
        self.addCleanup(s.close)
        code, ehlo = s.ehlo()
        self.assertEqual(code, 250)
        self.assertIn("starttls", s.esmtp_features)
        self.assertNotIn("auth", s.esmtp_features)     # no AUTH before TLS
        for kw in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
            self.assertIn(kw, s.esmtp_features)
        self.assertEqual(s.esmtp_features["size"], "35882577")
        s.starttls(context=self.ctx)
        s.ehlo()
        self.assertNotIn("starttls", s.esmtp_features)
        self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN", "XOAUTH2"])
        s.user, s.password = USER, PASSWORD
        code, text = s.auth("PLAIN", s.auth_plain)
        self.assertEqual((code, text), (235, b"2.7.0 Authentication successful"))
        self.assertEqual(s.sendmail(SENDER, ["alice@example.net"], MESSAGE), {})
        s.quit()
        [m] = self.fake.wait_messages(1)
        self.assertEqual(m.mail_from, SENDER)
        self.assertEqual(m.rcpt_to, ["alice@example.net"])
        self.assertEqual(m.data, MESSAGE)
        self.assertEqual((m.auth_user, m.auth_mechanism), (USER, "PLAIN"))
        self.assertTrue(m.tls)
        self.assertIn(m.tls_version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(m.acknowledged)
        self.assertEqual(m.reply_code, 250)
        self.assertEqual(m.declared_size, len(MESSAGE))
        self.assertEqual(m.email["Subject"], "test")
        self.fake.wait_idle()
        [conn] = self.fake.connections
        self.assertEqual(conn.close_reason, "quit")
        self.assertEqual(conn.auth_user, USER)
        self.assertIn("AUTH PLAIN <redacted>", conn.commands)
        secret = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        for _, line in conn.transcript:
            self.assertNotIn(secret, line)
            self.assertNotIn(PASSWORD, line)
        self.fake.assert_no_violations()

    def test_auth_login_with_and_without_initial_response(self):
        for initial in (True, False):
            s = self.smtp(login=False)
            s.user, s.password = USER, PASSWORD
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=initial)
            self.assertEqual(code, 235)
            s.quit()
        events = self.fake.auth_events
        self.assertEqual([(e.mechanism, e.user, e.ok) for e in events], [("LOGIN", USER, True)] * 2)
        for conn in self.fake.connections:
            self.assertFalse([c for c in conn.commands if PASSWORD in c
                              or base64.b64encode(PASSWORD.encode()).decode() in c])
        self.fake.assert_no_violations()

    def test_bad_password(self):
        s = self.smtp(login=False)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.auth("PLAIN", lambda challenge=None: "\0%s\0wrong" % USER)
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.8"))
        self.assertFalse(self.fake.auth_events[0].ok)
        self.fake.assert_no_violations()

    def test_xoauth2_good_token(self):
        s = self.smtp(login=False)
        code, _ = s.auth("XOAUTH2", lambda challenge=None: xoauth2(USER, TOKEN))
        self.assertEqual(code, 235)
        s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        [m] = self.fake.wait_messages(1)
        self.assertEqual((m.auth_user, m.auth_mechanism), (USER, "XOAUTH2"))
        self.fake.assert_no_violations()

    def test_xoauth2_bad_token_gets_error_challenge(self):
        s = self.smtp(login=False)
        challenges = []

        def auth(challenge=None):
            if challenge is None:
                return xoauth2(USER, "expired-token")
            challenges.append(challenge)
            return ""                      # the empty response the protocol asks for

        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.auth("XOAUTH2", auth)
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.8"))
        [challenge] = challenges
        detail = json.loads(challenge)
        self.assertEqual(detail["status"], "401")
        self.assertIn("bearer", detail["schemes"])
        self.assertEqual(detail["scope"], "https://mail.google.com/")
        self.assertFalse(self.fake.auth_events[-1].ok)
        self.fake.assert_no_violations()

    def test_xoauth2_raw_exchange_without_initial_response(self):
        r = self.raw_tls()
        self.assertEqual(r.cmd("AUTH XOAUTH2"), (334, [""]))
        code, [payload] = r.cmd(base64.b64encode(xoauth2(USER, "bad").encode()).decode())
        self.assertEqual(code, 334)
        self.assertEqual(json.loads(base64.b64decode(payload))["status"], "401")
        code, text = r.cmd("")
        self.assertEqual(code, 535)
        self.assertTrue(text[0].startswith("5.7.8"))
        # A long token goes after the 334, never inline (RFC 4954 section 4).
        long_token = "x" * 3000
        self.fake.add_oauth_token(USER, long_token)
        self.assertEqual(r.cmd("AUTH XOAUTH2")[0], 334)
        self.assertEqual(r.cmd(base64.b64encode(xoauth2(USER, long_token).encode()).decode())[0],
                         235)
        self.fake.assert_no_violations()

    def test_xoauth2_long_initial_response_is_a_violation(self):
        long_token = "y" * 1000
        self.fake.add_oauth_token(USER, long_token)
        r = self.raw_tls()
        code, text = r.cmd("AUTH XOAUTH2 " + base64.b64encode(xoauth2(USER, long_token).encode())
                           .decode())
        self.assertEqual((code, text), (500, ["5.5.6 Authentication Exchange line is too long"]))
        self.assertEqual(self.kinds(), ["command_too_long"])

    def test_xoauth2_microsoft_style(self):
        fake = self.make_fake(xoauth2_errors="microsoft")
        s = self.smtp(fake, login=False)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.auth("XOAUTH2", lambda challenge=None: xoauth2(USER, "nope"))
        self.assertEqual(cm.exception.smtp_error, b"5.7.3 Authentication unsuccessful")

    def test_auth_in_plaintext_is_a_violation(self):
        r = self.raw()
        self.assertEqual(r.cmd("EHLO client.test")[0], 250)
        cred = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        code, text = r.cmd("AUTH PLAIN " + cred)
        self.assertEqual((code, text), (530, ["5.7.0 Must issue a STARTTLS command first"]))
        self.assertEqual(self.kinds(), ["plaintext_auth"])
        self.assertEqual(self.fake.connections[0].commands[-1], "AUTH PLAIN <redacted>")

    def test_require_auth(self):
        fake = self.make_fake(require_auth=True)
        s = self.smtp(fake, login=False)
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        self.assertEqual(cm.exception.smtp_code, 530)
        self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.0"))
        fake.assert_no_violations()

    def test_auth_twice_and_before_ehlo_after_tls(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.starttls(self.ctx)
        # after STARTTLS the client must EHLO again
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 503)
        r.cmd("EHLO client.test")
        cred = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        self.assertEqual(r.cmd("AUTH PLAIN " + cred)[0], 235)
        self.assertEqual(r.cmd("AUTH PLAIN " + cred)[0], 503)
        self.assertEqual(self.kinds(), ["sequence", "sequence"])

    def test_implicit_tls(self):
        fake = self.make_fake(mode="implicit")
        s = self.smtp(fake)
        self.assertNotIn("starttls", s.esmtp_features)
        self.assertIn("auth", s.esmtp_features)
        s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        s.quit()
        [m] = fake.wait_messages(1)
        self.assertTrue(m.tls)
        self.assertEqual(m.auth_user, USER)
        fake.assert_no_violations()

    def test_plain_mode(self):
        fake = FakeSmtpServer(mode="plain", auth_before_tls=True).start()
        self.addCleanup(fake.stop)
        self.assertIsNone(fake.ca_file)
        fake.add_user(USER, PASSWORD)
        s = self.smtp(fake, tls=False)
        self.assertNotIn("starttls", s.esmtp_features)
        s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        s.quit()
        [m] = fake.wait_messages(1)
        self.assertFalse(m.tls)
        self.assertIsNone(m.tls_version)
        self.assertEqual(m.auth_user, USER)
        fake.assert_no_violations()
        # without auth_before_tls a plain server does not offer AUTH at all
        bare = self.make_fake(mode="plain")
        s = self.smtp(bare, tls=False, login=False)
        self.assertNotIn("auth", s.esmtp_features)

    def test_starttls_not_offered(self):
        fake = self.make_fake(offer_starttls=False)
        s = self.smtp(fake, tls=False, login=False)
        self.assertNotIn("starttls", s.esmtp_features)
        self.assertNotIn("auth", s.esmtp_features)
        with self.assertRaises(smtplib.SMTPNotSupportedError):
            s.starttls(context=self.ctx)
        self.assertEqual(s.docmd("STARTTLS")[0], 502)
        fake.assert_no_violations()

    def test_starttls_injection_discarded(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        self.assertEqual(r.reply()[0], 220)
        r.sock = self.ctx.wrap_socket(r.sock, server_hostname="127.0.0.1")
        code, lines = r.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertIn("AUTH PLAIN LOGIN XOAUTH2", lines)
        # the injected MAIL was not executed: a new MAIL is not "nested"
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(self.kinds(), ["starttls_injection"])

    def test_plaintext_after_starttls(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.send("EHLO client.test\r\n")
        self.assertTrue(r.is_closed())
        self.fake.wait_idle()
        self.assertEqual(self.kinds(), ["plaintext_after_starttls"])


class TransactionTest(FakeSmtpTestBase):

    def test_per_recipient_replies(self):
        self.fake.rcpt_reply("bob@example.net", 550, "5.1.1 No such user")
        self.fake.rcpt_reply("carol@example.net", 450, "4.2.1 Mailbox busy", times=1)
        s = self.smtp()
        refused = s.sendmail(SENDER, ["alice@example.net", "bob@example.net",
                                      "carol@example.net"], MESSAGE)
        self.assertEqual(refused, {"bob@example.net": (550, b"5.1.1 No such user"),
                                   "carol@example.net": (450, b"4.2.1 Mailbox busy")})
        # carol's 450 was for one time only
        self.assertEqual(s.sendmail(SENDER, ["carol@example.net"], MESSAGE), {})
        first, second = self.fake.wait_messages(2)
        self.assertEqual(first.rcpt_to, ["alice@example.net"])
        self.assertEqual(first.rcpt_rejected,
                         [("bob@example.net", 550, "5.1.1 No such user"),
                          ("carol@example.net", 450, "4.2.1 Mailbox busy")])
        self.assertEqual(second.rcpt_to, ["carol@example.net"])
        self.fake.assert_no_violations()

    def test_all_recipients_refused(self):
        self.fake.rcpt_reply("*", 550, "5.1.1 No such user")
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            s.sendmail(SENDER, ["x@example.net"], MESSAGE)
        self.assertEqual(self.fake.messages, [])
        self.fake.assert_no_violations()

    def test_final_dot_replies_queue_then_default(self):
        self.fake.data_reply(451, "4.3.0 Try again later", times=1)
        self.fake.data_reply(554, "5.6.0 Content rejected", times=1)
        s = self.smtp()
        for code in (451, 554):
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
            self.assertEqual(cm.exception.smtp_code, code)
        self.assertEqual(s.sendmail(SENDER, ["alice@example.net"], MESSAGE), {})
        self.fake.data_reply(250, "2.0.0 Fine")           # new persistent default
        s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        msgs = self.fake.wait_messages(4)
        self.assertEqual([m.reply_code for m in msgs], [451, 554, 250, 250])
        self.assertEqual([m.acknowledged for m in msgs], [False, False, True, True])
        self.assertEqual(msgs[3].reply_text, "2.0.0 Fine")
        self.assertEqual(len(self.fake.wait_messages(2, acknowledged=True)), 2)
        self.fake.assert_no_violations()

    def test_mail_reply(self):
        self.fake.mail_reply(451, "4.7.1 Sender temporarily deferred", times=1)
        s = self.smtp()
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        self.assertEqual(cm.exception.smtp_code, 451)
        s.rset()
        self.assertEqual(s.sendmail(SENDER, ["alice@example.net"], MESSAGE), {})
        self.fake.assert_no_violations()

    def test_greeting_reply_421(self):
        self.fake.greeting_reply(421, "4.3.2 Service not available", times=1)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("127.0.0.1", self.fake.port, local_hostname="client.test", timeout=5)
        self.assertEqual(cm.exception.smtp_code, 421)
        self.smtp().quit()        # once only

    def test_command_reply_starttls_454(self):
        self.fake.command_reply("STARTTLS", 454, "4.7.0 TLS not available due to local problem")
        s = self.smtp(tls=False, login=False)
        with self.assertRaises(smtplib.SMTPResponseException) as cm:
            s.starttls(context=self.ctx)
        self.assertEqual(cm.exception.smtp_code, 454)

    def test_dot_unstuffing_and_exact_bytes(self):
        r = self.raw_tls()
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n" % SENDER)
        self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 354])
        r.send(b"Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        [m] = self.fake.wait_messages(1)
        self.assertEqual(m.data, b"Subject: dots\r\n\r\n.leading dot\r\n")
        self.assertEqual(m.transfer, "DATA")
        self.fake.assert_no_violations()

    def test_connection_reuse_counted(self):
        s = self.smtp()
        s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
        s.rset()
        s.sendmail(SENDER, ["bob@example.net"], MESSAGE)
        s.quit()
        self.smtp().quit()          # a second connection without mail
        msgs = self.fake.wait_messages(2)
        self.assertEqual([m.index_on_connection for m in msgs], [1, 2])
        self.assertEqual(msgs[0].connection_id, msgs[1].connection_id)
        self.fake.wait_idle()
        self.assertEqual(self.fake.messages_per_connection(), {1: 2, 2: 0})
        self.assertEqual(self.fake.connection_count, 2)
        self.fake.assert_no_violations()

    def test_max_concurrent_connections(self):
        clients = [self.smtp(login=False) for _ in range(3)]
        self.assertEqual(self.fake.max_concurrent_connections, 3)
        for c in clients:
            c.quit()
        self.fake.wait_idle()
        self.assertEqual(self.fake.active_connections, 0)
        self.assertEqual(self.fake.max_concurrent_connections, 3)

    def test_connection_limit(self):
        fake = self.make_fake(max_connections=1)
        first = self.smtp(fake, tls=False, login=False)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP("127.0.0.1", fake.port, local_hostname="client.test", timeout=5)
        self.assertEqual(cm.exception.smtp_code, 421)
        first.quit()

    def test_delay(self):
        self.fake.delay("mail", 0.3, times=1)
        s = self.smtp()
        t0 = time.monotonic()
        self.assertEqual(s.mail(SENDER)[0], 250)
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)

    def test_chunking(self):
        fake = self.make_fake(chunking=True)
        s = self.smtp(fake, login=False)
        self.assertIn("chunking", s.esmtp_features)
        r = self.raw_tls(fake)
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\n" % SENDER)
        self.assertEqual([r.reply()[0] for _ in range(2)], [250, 250])
        part1, part2 = MESSAGE[:20], MESSAGE[20:]
        r.send(b"BDAT %d\r\n%sBDAT %d LAST\r\n%s" % (len(part1), part1, len(part2), part2))
        self.assertEqual([r.reply()[0] for _ in range(2)], [250, 250])
        [m] = fake.wait_messages(1)
        self.assertEqual((m.data, m.transfer, m.acknowledged), (MESSAGE, "BDAT", True))
        fake.assert_no_violations()
        # BDAT where CHUNKING was not advertised
        r = self.raw_tls()
        r.cmd("MAIL FROM:<%s>" % SENDER)
        r.cmd("RCPT TO:<alice@example.net>")
        r.send(b"BDAT 5 LAST\r\nhello")
        self.assertEqual(r.reply()[0], 502)
        self.assertEqual(self.kinds(), ["not_advertised"])


class DropTest(FakeSmtpTestBase):
    """drop_at(stage): the client sees the connection closed at that point."""

    STEPS = ["connect", "ehlo", "starttls", "ehlo2", "auth", "mail", "rcpt", "data", "rset",
             "quit"]
    WHERE = {"greeting": "connect", "ehlo": "ehlo", "starttls": "starttls",
             "tls_handshake": "starttls", "auth": "auth", "mail": "mail", "rcpt": "rcpt",
             "data": "data", "after_dot_before_reply": "data", "after_reply": "rset",
             "rset": "rset", "quit": "quit"}

    def run_client(self, fake):
        """Runs a whole session; returns the step that failed and its error."""
        s = None
        step = "connect"
        try:
            s = smtplib.SMTP("127.0.0.1", fake.port, local_hostname="client.test", timeout=5)
            step = "ehlo"
            s.ehlo()
            step = "starttls"
            s.starttls(context=self.ctx)
            step = "ehlo2"
            s.ehlo()
            step = "auth"
            s.login(USER, PASSWORD)
            step = "mail"
            s.mail(SENDER)
            step = "rcpt"
            s.rcpt("alice@example.net")
            step = "data"
            s.data(MESSAGE)
            step = "rset"
            s.rset()
            step = "quit"
            s.quit()
            return None, None
        except Exception as e:     # noqa: BLE001 - any failure is the point here
            return step, e
        finally:
            if s is not None:
                s.close()

    def test_every_stage(self):
        self.assertEqual(set(self.WHERE), set(DROP_STAGES))
        for stage in DROP_STAGES:
            with self.subTest(stage=stage):
                fake = self.make_fake()
                fake.drop_at(stage)
                t0 = time.monotonic()
                step, err = self.run_client(fake)
                self.assertLess(time.monotonic() - t0, 4, "a drop, not a timeout")
                self.assertEqual(step, self.WHERE[stage], err)
                self.assertIsInstance(err, (smtplib.SMTPServerDisconnected, ConnectionError,
                                            ssl.SSLError))
                fake.wait_idle()
                self.assertEqual(fake.connections[0].close_reason, "drop:" + stage)
                msgs = fake.messages
                if stage == "after_dot_before_reply":
                    [m] = msgs
                    self.assertFalse(m.acknowledged)
                    self.assertIsNone(m.reply_code)
                    self.assertEqual(m.data, MESSAGE)
                elif stage in ("after_reply", "rset", "quit"):
                    [m] = msgs
                    self.assertTrue(m.acknowledged)
                else:
                    self.assertEqual(msgs, [])
                fake.assert_no_violations()
                # one time only: the next session goes through
                self.assertEqual(self.run_client(fake), (None, None))

    def test_drop_with_skip_and_reset(self):
        self.fake.drop_at("rcpt", skip=1, reset=True)
        s = self.smtp()
        s.mail(SENDER)
        self.assertEqual(s.rcpt("alice@example.net")[0], 250)
        with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionError)):
            s.rcpt("bob@example.net")


class ViolationTest(FakeSmtpTestBase):
    fake_args = {"mode": "plain"}

    def open_transaction(self, r, rcpt="alice@example.net"):
        self.assertEqual(r.cmd("EHLO client.test")[0], 250)
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)

    def test_pipelining_accepted_when_advertised(self):
        r = self.raw()
        code, lines = r.cmd("EHLO client.test")
        self.assertIn("PIPELINING", lines)
        r.send("MAIL FROM:<%s> BODY=8BITMIME\r\nRCPT TO:<alice@example.net>\r\n"
               "RCPT TO:<bob@example.net>\r\nDATA\r\n" % SENDER)
        self.assertEqual([r.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        # message content may start a group: content, next transaction, QUIT
        r.send(MESSAGE + b".\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.net>\r\nNOOP\r\n")
        self.assertEqual([r.reply()[0] for _ in range(5)], [250, 250, 250, 250, 250])
        self.assertEqual(r.cmd("QUIT")[0], 221)
        [m] = self.fake.wait_messages(1)
        self.assertEqual(m.rcpt_to, ["alice@example.net", "bob@example.net"])
        self.assertEqual(m.body, "8BITMIME")
        self.fake.assert_no_violations()

    def test_pipelining_when_not_advertised(self):
        fake = self.make_fake(mode="plain", extensions=("SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"))
        r = self.raw(fake)
        code, lines = r.cmd("EHLO client.test")
        self.assertNotIn("PIPELINING", lines)
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\n" % SENDER)
        self.assertEqual(r.reply(), (554, ["5.5.0 Error: SMTP protocol synchronization"]))
        self.assertTrue(r.is_closed())
        self.assertEqual(fake.violation_kinds(), ["pipelining"])

    def test_pipelining_not_advertised_continue_mode(self):
        fake = self.make_fake(mode="plain", extensions=("SIZE",), sync_action="continue")
        r = self.raw(fake)
        r.cmd("EHLO client.test")
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\n" % SENDER)
        self.assertEqual([r.reply()[0] for _ in range(2)], [250, 250])
        self.assertEqual(fake.violation_kinds(), ["pipelining"])

    def test_content_before_354(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\nSubject: x\r\n" % SENDER)
        self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 554])
        self.assertEqual(self.kinds(), ["pipelining"])

    def test_command_after_ehlo_in_same_group(self):
        r = self.raw()
        r.send("EHLO client.test\r\nMAIL FROM:<%s>\r\n" % SENDER)
        self.assertEqual(r.reply()[0], 554)
        self.assertEqual(self.kinds(), ["pipelining"])

    def test_input_before_greeting(self):
        self.fake.delay("greeting", 0.5)
        r = self.raw(greeting=False)
        r.send("EHLO client.test\r\n")
        self.assertEqual(r.reply(), (554, ["5.5.0 Error: SMTP protocol synchronization"]))
        self.assertEqual(self.kinds(), ["pregreeting"])

    def test_bare_lf_in_data(self):
        r = self.raw()
        self.open_transaction(r)
        r.send(b"Subject: x\r\n\r\nline one\nline two\r\n.\r\n")
        code, text = r.reply()
        self.assertEqual(code, 550)
        self.assertTrue(text[0].startswith("5.5.2"))
        [m] = self.fake.wait_messages(1)
        self.assertFalse(m.acknowledged)
        self.assertEqual(m.violations, ["bare_lf"])
        self.assertEqual(self.kinds(), ["bare_lf"])

    def test_bare_lf_dot_does_not_end_data(self):
        r = self.raw()
        self.open_transaction(r)
        # <LF>.<LF> is not the end of the message (SMTP smuggling)
        r.send(b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n")
        self.assertEqual(r.reply()[0], 550)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        [m] = self.fake.wait_messages(1)
        self.assertIn(b"MAIL FROM:<evil@example.org>", m.data)
        self.assertEqual(self.kinds(), ["bare_lf"])

    def test_bare_cr_and_lf_in_commands(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("NOOP\rfoo")[0], 500)
        r.send("NOOP\n")
        self.assertEqual(r.reply(), (500, ["5.5.2 Error: bare <LF> received"]))
        self.assertEqual(self.kinds(), ["bare_cr", "bare_lf"])

    def test_line_lengths(self):
        r = self.raw()
        self.open_transaction(r)
        ok = b"x" * 998 + b"\r\n"               # exactly 1000 octets with CRLF
        r.send(b"Subject: x\r\n\r\n" + ok + b".\r\n")
        self.assertEqual(r.reply()[0], 250)
        self.fake.assert_no_violations()
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<alice@example.net>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: x\r\n\r\n" + b"y" + ok + b".\r\n")
        self.assertEqual(r.reply(), (500, ["5.5.2 Error: message content line too long"]))
        self.assertEqual(self.kinds(), ["line_too_long"])
        # a command line over 512 octets
        self.assertEqual(r.cmd("NOOP " + "z" * 600), (500, ["5.5.2 Error: line too long"]))
        self.assertEqual(self.kinds(), ["line_too_long", "command_too_long"])

    def test_size_exceeded(self):
        fake = self.make_fake(mode="plain", max_message_size=1000)
        r = self.raw(fake)
        code, lines = r.cmd("EHLO client.test")
        self.assertIn("SIZE 1000", lines)
        code, text = r.cmd("MAIL FROM:<%s> SIZE=5000" % SENDER)
        self.assertEqual((code, text),
                         (552, ["5.3.4 Message size exceeds fixed maximum message size"]))
        self.assertEqual(fake.violation_kinds(), ["size"])
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
        r.cmd("RCPT TO:<alice@example.net>")
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: big\r\n\r\n" + (b"a" * 78 + b"\r\n") * 30 + b".\r\n")
        self.assertEqual(r.reply()[0], 552)
        self.assertEqual(fake.violation_kinds(), ["size", "size"])
        [m] = fake.wait_messages(1)
        self.assertFalse(m.acknowledged)

    def test_out_of_order(self):
        r = self.raw()
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 503)       # before EHLO
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("RCPT TO:<alice@example.net>")[0], 503)   # no MAIL
        self.assertEqual(r.cmd("DATA")[0], 503)                          # no MAIL
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(r.cmd("MAIL FROM:<%s>" % SENDER)[0], 503)       # nested
        self.assertEqual(r.cmd("DATA")[0], 503)                          # no RCPT
        self.assertEqual(self.kinds(), ["sequence"] * 5)

    def test_syntax_and_parameters(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("MAIL FROM: <%s>" % SENDER)[0], 501)      # space
        self.assertEqual(r.cmd("MAIL FROM:<%s> RET=FULL" % SENDER)[0], 555)   # no DSN
        self.assertEqual(r.cmd("MAIL FROM:<not an address>")[0], 501)
        self.assertEqual(r.cmd("MAIL FROM:<jürgen@example.com>")[0], 553)   # no SMTPUTF8
        self.assertEqual(r.cmd("XYZZY")[0], 500)
        self.assertEqual(self.kinds(), ["syntax", "not_advertised", "syntax", "smtputf8",
                                        "unknown_command"])

    def test_8bit_without_body_parameter(self):
        r = self.raw()
        self.open_transaction(r)
        r.send("Subject: café\r\n\r\nbody\r\n.\r\n".encode("utf-8"))
        self.assertEqual(r.reply()[0], 250)
        self.assertEqual(self.kinds(), ["8bit"])

    def test_helo_only(self):
        r = self.raw()
        self.assertEqual(r.cmd("HELO client.test"), (250, ["smarthost.test"]))
        # HELO advertises nothing, so no pipelining either
        r.send("MAIL FROM:<%s>\r\nRCPT TO:<alice@example.net>\r\n" % SENDER)
        self.assertEqual(r.reply()[0], 554)
        self.assertEqual(self.kinds(), ["pipelining"])


class StandaloneTest(unittest.TestCase):

    def test_main(self):
        proc = subprocess.Popen([sys.executable, str(FAKES / "fake_smtp_server.py"),
                                 "--mode", "plain", "--auth-before-tls",
                                 "--user", "%s:%s" % (USER, PASSWORD)],
                                stdout=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()
            self.assertTrue(first.startswith("listening:"), first)
            port = int(first.split()[1].rsplit(":", 1)[1])
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5)
            s.login(USER, PASSWORD)
            s.sendmail(SENDER, ["alice@example.net"], MESSAGE)
            s.quit()
            deadline = time.monotonic() + 5
            lines = []
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                lines.append(line)
                if line.startswith("message "):
                    break
            self.assertTrue(lines[-1].startswith("message FAKE000001"), lines)
        finally:
            proc.terminate()
            proc.wait(timeout=5)
            proc.stdout.close()


if __name__ == "__main__":
    unittest.main()
