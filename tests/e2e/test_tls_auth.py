"""TLS (STARTTLS and implicit), AUTH PLAIN and LOGIN, and the rules around
them, with Python's smtplib, swaks and curl against the real binary."""

import base64
import shutil
import smtplib
import ssl
import subprocess
import unittest

from harness import Relay, RawClient, client_tls_context, hash_password, split_received

PASSWORD = "correct horse battery staple"

MSG = (b"From: printer@example.com\r\nTo: alice@example.com\r\nSubject: tls\r\n\r\n"
       b"Sent over TLS.\r\n")


def tls_relay(**extra):
    """Loopback must authenticate (anonymous relay only from a network nobody
    here is in); three listeners: STARTTLS, implicit TLS, plaintext AUTH."""
    overrides = dict(
        listeners=[
            {"name": "submission", "address": "127.0.0.1:0", "tls": "starttls", "auth": "required"},
            {"name": "smtps", "address": "127.0.0.1:0", "tls": "implicit", "auth": "required"},
            {"name": "lan", "address": "127.0.0.1:0", "tls": "none", "auth": "optional",
             "allow_plaintext_auth": True},
        ],
        access={"allowed_networks": ["127.0.0.0/8"], "anonymous_networks": ["192.0.2.0/24"]},
        auth={"users": [{"name": "printer", "password_hash": hash_password(PASSWORD)}],
              "max_failures_per_ip": 3, "lockout": "10m"},
    )
    overrides.update(extra)
    return Relay(**overrides)


def plain_ir(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


class TlsAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.relay = tls_relay().start()
        cls.ctx = client_tls_context(cls.relay)

    @classmethod
    def tearDownClass(cls):
        rc = cls.relay.stop()
        cls.relay.cleanup()
        assert rc == 0, f"relay exited with {rc}"

    def port(self, name):
        return self.relay.ports[name]

    def starttls_client(self):
        s = smtplib.SMTP(timeout=10)
        s._host = "relay.test"   # the name the certificate is checked against
        s.connect("127.0.0.1", self.port("submission"))
        return s

    def test_starttls_then_auth_plain(self):
        with self.starttls_client() as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before TLS")
            s.starttls(context=self.ctx)
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again under TLS")
            self.assertIn("PLAIN", s.esmtp_features["auth"])
            self.assertIn("LOGIN", s.esmtp_features["auth"])
            self.assertEqual(s.login("printer", PASSWORD)[0], 235)
            self.assertEqual(s.sendmail("printer@example.com", ["alice@example.com"], MSG), {})
        eml = self.wait_for_message(b"Sent over TLS.")
        self.assertIn(b"with ESMTPSA", split_received(eml)[0])

    def test_auth_login_without_initial_response(self):
        with self.starttls_client() as s:
            s.starttls(context=self.ctx)
            s.ehlo("client.test")
            s.user, s.password = "printer", PASSWORD   # what login() would set
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235)

    def test_implicit_tls(self):
        raw = RawClient(self.port("smtps"))
        raw.starttls(self.ctx)   # implicit: TLS from the first byte
        self.assertEqual(raw.code(), 220)
        raw.send(b"EHLO client.test\r\n")
        code, lines = raw.reply()
        self.assertEqual(code, 250)
        self.assertIn("AUTH PLAIN LOGIN", [l[4:] for l in lines])
        self.assertNotIn("STARTTLS", "\n".join(lines))
        raw.send(b"AUTH PLAIN " + plain_ir("printer", PASSWORD) + b"\r\n")
        self.assertEqual(raw.code(), 235)
        raw.send(b"MAIL FROM:<printer@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        self.assertEqual([raw.code(), raw.code(), raw.code()], [250, 250, 354])
        raw.send(b"Subject: implicit\r\n\r\nimplicit TLS\r\n.\r\n")
        self.assertEqual(raw.code(), 250)
        raw.send(b"QUIT\r\n")
        self.assertEqual(raw.code(), 221)
        self.wait_for_message(b"implicit TLS")

    def test_rules_before_tls(self):
        c = RawClient(self.port("submission"))
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO client.test\r\n")
        code, lines = c.reply()
        self.assertIn("STARTTLS", [l[4:] for l in lines])
        self.assertFalse(any("AUTH" in l for l in lines))
        c.send(b"AUTH PLAIN " + plain_ir("printer", PASSWORD) + b"\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 538, lines)
        self.assertTrue(lines[0].startswith("538 5.7.11"))
        c.send(b"MAIL FROM:<printer@example.com>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 530)
        self.assertIn("STARTTLS", lines[0])
        c.close()

    def test_starttls_discards_pipelined_commands(self):
        c = RawClient(self.port("submission"))
        self.assertEqual(c.code(), 220)
        c.send(b"EHLO client.test\r\n")
        c.reply()
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\nRSET\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 220)
        self.assertTrue(lines[0].startswith("220 2.0.0"))
        c.starttls(self.ctx)
        c.send(b"NOOP\r\n")
        # Had the injected MAIL survived, its reply (503: no EHLO after TLS)
        # would come first.
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.send(b"MAIL FROM:<printer@example.com>\r\n")
        self.assertEqual(c.code(), 503, "state must be reset after STARTTLS: EHLO first")
        c.close()

    def test_plaintext_auth_on_the_lan_listener(self):
        with smtplib.SMTP("127.0.0.1", self.port("lan"), timeout=10) as s:
            s.ehlo("client.test")
            self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
            self.assertEqual(s.login("printer", PASSWORD)[0], 235)
            s.sendmail("printer@example.com", ["carol@example.com"],
                       b"Subject: lan\r\n\r\nplaintext AUTH on the LAN\r\n")
        eml = self.wait_for_message(b"plaintext AUTH on the LAN")
        self.assertIn(b"with ESMTPA", split_received(eml)[0])

    def test_unauthenticated_mail_is_refused(self):
        with smtplib.SMTP("127.0.0.1", self.port("lan"), timeout=10) as s:
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("printer@example.com", ["x@example.com"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(cm.exception.smtp_code, 530)

    def test_cancel_and_bad_base64(self):
        c = RawClient(self.port("lan"))
        c.code()
        c.send(b"EHLO client.test\r\n")
        c.reply()
        c.send(b"AUTH LOGIN\r\n")
        self.assertEqual(c.code(), 334)
        c.send(b"*\r\n")
        self.assertEqual(c.code(), 501)
        c.send(b"AUTH PLAIN !!!notbase64\r\n")
        self.assertEqual(c.code(), 501)
        c.send(b"AUTH CRAM-MD5\r\n")
        self.assertEqual(c.code(), 504)
        c.close()

    def test_smtputf8_address(self):
        with smtplib.SMTP("127.0.0.1", self.port("lan"), timeout=10) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("smtputf8"))
            s.login("printer", PASSWORD)
            s.sendmail("printer@example.com", ["δοκιμή@παράδειγμα.δοκιμή"],
                       "Subject: utf8\r\n\r\nSMTPUTF8 body\r\n".encode(),
                       mail_options=["SMTPUTF8"])
        eml = self.wait_for_message(b"SMTPUTF8 body")
        self.assertIn("for <δοκιμή@παράδειγμα.δοκιμή>".encode(), split_received(eml)[0])
        c = RawClient(self.port("lan"))
        c.code()
        c.send(b"EHLO client.test\r\nAUTH PLAIN " + plain_ir("printer", PASSWORD) + b"\r\n")
        c.reply()
        self.assertEqual(c.code(), 235)
        c.send(b"MAIL FROM:<printer@example.com>\r\n")
        self.assertEqual(c.code(), 250)
        c.send("RCPT TO:<δοκιμή@example.com>\r\n".encode())
        code, lines = c.reply()
        self.assertEqual(code, 553)
        self.assertTrue(lines[0].startswith("553 5.6.7"), lines)
        c.close()

    @unittest.skipUnless(shutil.which("swaks"), "swaks is not installed")
    def test_swaks_tls_and_auth(self):
        for flag, port in (("--tls", "submission"), ("--tls-on-connect", "smtps")):
            for mech in ("PLAIN", "LOGIN"):
                body = f"swaks {flag} {mech}"
                out = subprocess.run(
                    ["swaks", "--server", f"127.0.0.1:{self.port(port)}", flag,
                     "--auth", mech, "--auth-user", "printer", "--auth-password", PASSWORD,
                     "--from", "printer@example.com", "--to", "dave@example.com",
                     "--header", "Subject: swaks", "--body", body],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("235 2.7.0", out.stdout)
                self.wait_for_message(body.encode())

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_curl_smtp_starttls_auth(self):
        msg = self.relay.dir / "curl.eml"
        msg.write_bytes(b"From: printer@example.com\r\nTo: erin@example.com\r\n"
                        b"Subject: curl\r\n\r\nSent by curl.\r\n")
        port = self.port("submission")
        out = subprocess.run(
            ["curl", "--silent", "--show-error", "--ssl-reqd",
             "--cacert", str(self.relay.state_dir / "tls" / "cert.pem"),
             "--resolve", f"relay.test:{port}:127.0.0.1",
             f"smtp://relay.test:{port}", "--user", f"printer:{PASSWORD}",
             "--mail-from", "printer@example.com", "--mail-rcpt", "erin@example.com",
             "--upload-file", str(msg)],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.wait_for_message(b"Sent by curl.")

    def wait_for_message(self, needle):
        import time
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for eml, _ in self.relay.delivered():
                if needle in eml:
                    return eml
            time.sleep(0.05)
        self.fail(f"no delivered message contains {needle!r}:\n" + self.relay.log())


class LockoutTest(unittest.TestCase):
    def test_bad_passwords_lock_the_address_out(self):
        with tls_relay() as relay:
            port = relay.ports["lan"]
            codes = []
            attempts = 0
            while attempts < 1000:
                c = RawClient(port)
                code, lines = c.reply()
                if code != 220:
                    codes.append(code)
                    attempts += 1
                    c.close()
                    continue
                c.send(b"EHLO brute.test\r\n")
                c.reply()
                while attempts < 1000:
                    attempts += 1
                    c.send(b"AUTH PLAIN " + plain_ir("printer", f"guess{attempts}") + b"\r\n")
                    code = c.code()
                    codes.append(code)
                    if code != 535:
                        break
                c.close()
            self.assertEqual(codes.count(535), 2, codes[:10])
            self.assertEqual(codes[2], 421, codes[:10])
            self.assertTrue(all(c == 421 for c in codes[2:]), set(codes[2:]))
            # The right password does not help a locked-out address.
            c = RawClient(port)
            self.assertEqual(c.code(), 421)
            self.assertTrue(relay.wait_log(r"locked out"))

    def test_unknown_user_and_wrong_password_answer_alike(self):
        with tls_relay() as relay:
            port = relay.ports["lan"]
            replies = []
            for user in ("printer", "nobody"):
                c = RawClient(port)
                c.code()
                c.send(b"EHLO x.test\r\nAUTH PLAIN " + plain_ir(user, "wrong") + b"\r\n")
                c.reply()
                replies.append(c.reply())
                c.close()
            self.assertEqual(replies[0], replies[1])
            self.assertEqual(replies[0][0], 535)


if __name__ == "__main__":
    unittest.main()
