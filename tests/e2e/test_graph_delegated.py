"""A graph provider that signs in as a user (`auth_mode: refresh_token`):
`mailbridge oauth login` by device code and by password against the fake
Entra ID, the refresh token stored encrypted and rotated on every use, mail
sent with the user's delegated token, and what the log says when the
sign-in has to be repeated."""

import base64
import smtplib
import subprocess
import threading
import time

from harness import BINARY, Relay
from microsoft import CLIENT, SENDER, TENANT, MicrosoftTestCase

PASSWORD = "Winter-2026-relay-pw!"


class GraphDelegatedTest(MicrosoftTestCase):
    def setUp(self):
        super().setUp()
        # A public client (no secret), delegated Mail.Send and Mail.ReadWrite
        # consented, no application permissions at all.
        self.fake.add_app(TENANT, CLIENT, roles=(), public_client=True)
        self.fake.add_user(TENANT, SENDER, password=PASSWORD)
        self.fake.device_code_interval = 1
        self.fake.strict_refresh_rotation = True   # an old refresh token is refused
        p = self.graph_provider(None, auth_mode="refresh_token", user=SENDER)
        del p["client_secret"]
        self.relay = Relay(providers=[p], queue={"retry_delay": "1s", "max_retry_delay": "2s"})
        self.addCleanup(self.relay.cleanup)
        self.relay.write_config()

    def oauth(self, *args, stdin=None):
        return subprocess.run([BINARY, "oauth", *args, "--provider", "m365", "--config",
                               str(self.relay.config_path)], input=stdin, capture_output=True,
                              text=True, timeout=60)

    def send(self, subject="delegated"):
        msg = ("From: %s\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nhello\r\n"
               % (SENDER, subject)).encode()
        with smtplib.SMTP("127.0.0.1", self.relay.port, timeout=30) as s:
            s.sendmail(SENDER, ["alice@example.com"], msg)

    def test_device_code_login_then_delivery_with_rotation(self):
        self.fake.auto_approve_device_codes(SENDER)
        out = self.oauth("login")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("microsoft.com/devicelogin", out.stdout)
        self.assertIn("Signed in", out.stdout)
        self.assertEqual(self.fake.token_count("device_code", ok=True), 1)
        # Stored encrypted: no refresh token the fake issued is in any file.
        stored = b"".join(p.read_bytes() for p in (self.relay.state_dir / "oauth").iterdir())
        for rt in self.fake.refresh_tokens:
            self.assertNotIn(rt.value.encode(), stored)
        self.assertNotIn(SENDER.encode(), stored)

        with self.relay:
            self.send("first")
            [sent] = self.fake.wait_sent(1, timeout=20)
            self.assertEqual(sent.user.lower(), SENDER)     # a delegated token
            self.assertEqual(sent.mailbox.lower(), SENDER)
            # The access token expires: the next refresh must use the rotated
            # refresh token (the fake refuses a used one).
            self.fake.expire_tokens()
            self.send("second")
            self.fake.wait_sent(2, timeout=20)
            self.assertEqual(self.fake.token_count("refresh_token", ok=False), 0)
            self.assertGreaterEqual(self.fake.token_count("refresh_token", ok=True), 2)
            self.assertEqual(self.relay.wait_queue_empty(), [])
        for rt in self.fake.refresh_tokens:
            self.assertNotIn(rt.value, self.relay.log())

    def test_password_login(self):
        out = self.oauth("login", "--password", stdin="wrong-password\n")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("50126", out.stderr)
        self.assertNotIn("wrong-password", out.stdout + out.stderr)
        out = self.oauth("login", "--password", stdin=PASSWORD + "\n")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertNotIn(PASSWORD, out.stdout + out.stderr)
        with self.relay:
            self.send()
            [sent] = self.fake.wait_sent(1, timeout=20)
            self.assertEqual(sent.user.lower(), SENDER)

    def test_a_declined_sign_in_stores_nothing(self):
        def decline():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.fake.device_codes:
                    self.fake.decline_device_code()
                    return
                time.sleep(0.1)
        t = threading.Thread(target=decline)
        t.start()
        out = self.oauth("login")
        t.join()
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("declined", out.stderr)
        oauth_dir = self.relay.state_dir / "oauth"
        self.assertFalse(oauth_dir.exists() and any(oauth_dir.glob("*.token")))

    def test_without_sign_in_mail_waits_and_the_log_says_what_to_do(self):
        with self.relay:
            self.send()
            self.assertTrue(self.relay.wait_log(r"mailbridge oauth login --provider m365", timeout=15))
            self.assertEqual(self.fake.sent, [])
            self.assertEqual(len(self.relay.queued_ids()), 1)
            # Signing in while the relay runs: the next attempt uses it.
            self.fake.auto_approve_device_codes(SENDER)
            out = self.oauth("login")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.fake.wait_sent(1, timeout=30)

    def test_revoked_refresh_token(self):
        self.fake.auto_approve_device_codes(SENDER)
        self.assertEqual(self.oauth("login").returncode, 0)
        self.fake.revoke_refresh_tokens()
        with self.relay:
            self.send()
            self.assertTrue(self.relay.wait_log(r"50173|revoked", timeout=15))
            self.assertTrue(self.relay.wait_log(r"oauth login --provider m365", timeout=15))
            self.assertEqual(self.fake.sent, [])

    def test_logout_forgets_the_token(self):
        self.fake.auto_approve_device_codes(SENDER)
        self.assertEqual(self.oauth("login").returncode, 0)
        out = self.oauth("logout")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(list((self.relay.state_dir / "oauth").glob("*.token")), [])

    def test_check_provider_reads_the_delegated_scopes(self):
        self.fake.auto_approve_device_codes(SENDER)
        self.assertEqual(self.oauth("login").returncode, 0)
        out = subprocess.run([BINARY, "check-provider", "m365", "--config", str(self.relay.config_path)],
                             capture_output=True, text=True, timeout=60)
        self.assertIn("ok: the token has Mail.Send (scopes:", out.stdout)
        self.assertIn("ok: Mail.ReadWrite granted", out.stdout)
        self.fake.revoke_refresh_tokens()
        out = subprocess.run([BINARY, "check-provider", "m365", "--config", str(self.relay.config_path)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("oauth login --provider m365", out.stdout)

    def test_login_needs_a_delegated_provider(self):
        p = self.graph_provider("secret")
        relay = Relay(providers=[p])
        self.addCleanup(relay.cleanup)
        relay.write_config()
        out = subprocess.run([BINARY, "oauth", "login", "--provider", "m365", "--config",
                              str(relay.config_path)], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("auth_mode: refresh_token", out.stderr)


class GraphUserPasswordTest(MicrosoftTestCase):
    """auth_mode user_password: each device signs in over SMTP AUTH with its
    own Entra ID account; the relay checks the password with the password
    grant and sends with that user's delegated token."""

    def setUp(self):
        super().setUp()
        self.fake.add_app(TENANT, CLIENT, roles=(), public_client=True)
        self.fake.add_user(TENANT, SENDER, password=PASSWORD)
        self.fake.add_user(TENANT, "mfa@contoso.example", password=PASSWORD, mfa=True)
        p = self.graph_provider(None, auth_mode="user_password")
        del p["client_secret"]
        self.relay = Relay(
            providers=[p], queue={"retry_delay": "1s", "max_retry_delay": "2s"},
            listeners=[{"name": "submission", "address": "127.0.0.1:0", "tls": "none",
                        "auth": "required", "allow_plaintext_auth": True}],
            access={"allowed_networks": ["127.0.0.0/8"], "anonymous_networks": []})
        self.addCleanup(self.relay.cleanup)

    def login(self, user, password):
        """One AUTH PLAIN (smtplib's login() would try LOGIN after a failure)."""
        s = smtplib.SMTP("127.0.0.1", self.relay.port, timeout=30)
        self.addCleanup(s.close)
        s.ehlo("device.test")
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        code, _ = s.docmd("AUTH", "PLAIN " + token)
        return s, code

    def test_right_and_wrong_passwords(self):
        with self.relay:
            s, code = self.login(SENDER, "not-the-password")
            self.assertEqual(code, 535)
            self.assertTrue(self.relay.wait_log(r"50126"))
            s, code = self.login(SENDER, PASSWORD)
            self.assertEqual(code, 235)
            s.sendmail(SENDER, ["alice@example.com"],
                       ("From: %s\r\nTo: alice@example.com\r\nSubject: pw\r\n\r\nhi\r\n" % SENDER).encode())
            [sent] = self.fake.wait_sent(1, timeout=20)
            self.assertEqual(sent.user.lower(), SENDER)       # the user's own delegated token
            self.assertEqual(self.fake.token_count("password", ok=True), 1)
            # Signing in again with the same password is remembered ...
            s, code = self.login(SENDER, PASSWORD)
            self.assertEqual(code, 235)
            self.assertEqual(self.fake.token_count("password"), 2)
            # ... a wrong one never rides on it.
            s, code = self.login(SENDER, PASSWORD + "x")
            self.assertEqual(code, 535)
            self.assertEqual(self.fake.token_count("password", ok=False), 2)
            # A second device of the same user sends on the same sign-in.
            s, code = self.login(SENDER, PASSWORD)
            self.assertEqual(code, 235)
            s.sendmail(SENDER, ["bob@example.com"],
                       ("From: %s\r\nTo: bob@example.com\r\nSubject: pw2\r\n\r\nhi\r\n" % SENDER).encode())
            self.fake.wait_sent(2, timeout=20)
            # The refresh token is kept, encrypted; the password is not kept.
            stored = b"".join(p.read_bytes() for p in (self.relay.state_dir / "oauth").iterdir())
            self.assertNotIn(PASSWORD.encode(), stored)
            for rt in self.fake.refresh_tokens:
                self.assertNotIn(rt.value.encode(), stored)
            log = self.relay.log()
        self.assertNotIn(PASSWORD, log)
        for rt in self.fake.refresh_tokens:
            self.assertNotIn(rt.value, log)

    def test_mfa_accounts_are_refused_with_the_reason_in_the_log(self):
        with self.relay:
            _, code = self.login("mfa@contoso.example", PASSWORD)
            self.assertEqual(code, 535)
            self.assertTrue(self.relay.wait_log(r"50076"))

    def test_an_identity_platform_outage_is_a_temporary_failure(self):
        with self.relay:
            self.fake.fail_next(1, status=503, endpoint="token")
            _, code = self.login(SENDER, PASSWORD)
            self.assertEqual(code, 454)
            _, code = self.login(SENDER, PASSWORD)
            self.assertEqual(code, 235)
