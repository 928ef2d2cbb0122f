"""Delivery to an upstream SMTP server: the real binary, real SMTP clients,
and tests/fakes/fake_smtp_server.py as the smarthost (STARTTLS or implicit
TLS with a test CA, AUTH PLAIN / LOGIN / XOAUTH2, scripted replies and
dropped connections). XOAUTH2 tokens come from the fake Entra ID and the
fake Google token endpoint, and the smarthost accepts only tokens they
issued for the right resource.

Every test ends with the fake's protocol checks: whatever a correct SMTP
client must not do (bare LF, unstuffed dots, long lines, pipelining where
not offered, plaintext after STARTTLS ...) would fail it."""

import subprocess
import sys
import shutil
import tempfile
import time
import unittest
from pathlib import Path

from harness import BINARY, Relay, send_message, split_received

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from fake_google import FakeGoogle  # noqa: E402
from fake_microsoft import FakeMicrosoft  # noqa: E402
from fake_smtp_server import FakeSmtpServer  # noqa: E402
from with_ca import WithTestCA  # noqa: E402

SENDER = "scanner@contoso.example"
ACCOUNT = "relay@contoso.example"
PASSWORD = "smarthost-password-0123"
TENANT = "contoso.example"
CLIENT = "0a1b2c3d-1111-2222-3333-444455556666"
SECRET = "Qm8~smtp-test-secret-value-0123"


def message(subject="scan", body=b"Scanned page attached.\r\n", sender=SENDER):
    return (b"From: Scanner <" + sender.encode() + b">\r\nTo: alice@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + subject.encode() +
            b"@contoso.example>\r\n\r\n" + body)


class UpstreamSmtpTest(WithTestCA):
    def smarthost(self, **kw):
        fake = FakeSmtpServer(ca=self.ca, **kw).start()
        self.addCleanup(fake.stop)
        fake.add_user(ACCOUNT, PASSWORD)
        return fake

    def relay(self, fake, provider=None, **overrides):
        p = {"name": "smarthost", "type": "smtp", "host": "127.0.0.1", "port": fake.port,
             "ca_file": fake.ca_file, "auth": "plain", "username": ACCOUNT, "password": PASSWORD}
        if fake.mode == "implicit":
            p["tls"] = "implicit"
        p.update(provider or {})
        for k in [k for k, v in p.items() if v is None]:
            del p[k]
        overrides.setdefault("queue", {"retry_delay": "1s", "max_retry_delay": "2s"})
        overrides.setdefault("smtp", {"wait_for_delivery": "20s"})
        relay = Relay(providers=[p], **overrides)
        self.addCleanup(relay.cleanup)
        return relay

    def send(self, relay, rcpts, msg=None, sender=SENDER):
        return send_message(relay.port, sender, rcpts, msg if msg is not None else message())

    def test_starttls_and_auth_plain_content_as_smtp_needs_it(self):
        fake = self.smarthost()
        body = (b".leading dot\r\n..two dots\r\n.\r\nbare LF follows\nlast line\r\n" +
                b"L" * 2500 + b"\r\nend\r\n")
        msg = message(body=body)
        relay = self.relay(fake, smtp={"wait_for_delivery": "20s", "long_lines": "accept"})
        with relay:
            code, text = self.send(relay, ["alice@example.com", "bob@example.com"], msg)
            self.assertEqual(code, 250, text)
            [got] = fake.wait_messages(1)
            self.assertTrue(got.tls)
            self.assertEqual(got.auth_user, ACCOUNT)
            self.assertEqual(got.auth_mechanism, "PLAIN")
            self.assertEqual(got.mail_from, SENDER)
            self.assertEqual(got.rcpt_to, ["alice@example.com", "bob@example.com"])
            self.assertIsNotNone(got.declared_size)
            _, rest = split_received(got.data)
            # Dots arrive unstuffed as they were; the bare LF became CRLF; the
            # 2,500-octet line was broken at 998 with CRLF SP.
            expected = message(body=(b".leading dot\r\n..two dots\r\n.\r\nbare LF follows\r\nlast line\r\n" +
                                     b"L" * 998 + b"\r\n " + b"L" * 997 + b"\r\n " + b"L" * 505 + b"\r\nend\r\n"))
            self.assertEqual(rest, expected)
            self.assertEqual(relay.wait_queue_empty(), [])
            self.assertNotIn(PASSWORD, relay.log())
            fake.assert_no_violations()

    def test_implicit_tls_and_auth_login(self):
        fake = self.smarthost(mode="implicit")
        relay = self.relay(fake, {"auth": "login"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            [got] = fake.wait_messages(1)
            self.assertTrue(got.tls)
            self.assertEqual(got.auth_mechanism, "LOGIN")
            self.assertEqual(got.auth_user, ACCOUNT)
            fake.assert_no_violations()

    def test_wrong_password_keeps_the_mail_queued(self):
        fake = self.smarthost()
        relay = self.relay(fake, {"password": "wrong"}, smtp={"wait_for_delivery": "0s"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertTrue(relay.wait_log(r"AUTH PLAIN as relay@contoso.example refused: 535"))
            self.assertEqual(fake.messages, [])
            self.assertEqual(len(relay.queued_ids()), 1)
            self.assertNotIn("wrong", relay.log().replace("wrong password", ""))
            fake.assert_no_violations()

    def test_starttls_stripped_nothing_is_sent_in_plaintext(self):
        fake = self.smarthost(offer_starttls=False, auth_before_tls=True)
        relay = self.relay(fake, smtp={"wait_for_delivery": "0s"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertTrue(relay.wait_log(r"does not offer STARTTLS"))
            fake.wait_connections(1)
            time.sleep(0.5)
            self.assertEqual(fake.messages, [])
            self.assertEqual(fake.auth_events, [])
            for conn in fake.connections:
                self.assertEqual([c.split()[0].upper() for c in conn.commands], ["EHLO"])
            self.assertEqual(len(relay.queued_ids()), 1)

    def test_untrusted_certificate_is_refused(self):
        fake = self.smarthost()
        relay = self.relay(fake, {"ca_file": None}, smtp={"wait_for_delivery": "0s"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            self.assertTrue(relay.wait_log(r"certificate is not trusted"))
            self.assertEqual(fake.messages, [])
            self.assertEqual(fake.auth_events, [])

    def test_mixed_recipient_results(self):
        fake = self.smarthost()
        fake.rcpt_reply("later@example.com", 450, "4.2.0 Mailbox busy", times=1)
        fake.rcpt_reply("gone@example.com", 550, "5.1.1 No such user")
        relay = self.relay(fake, smtp={"wait_for_delivery": "0s"})
        with relay:
            code, text = self.send(relay, ["ok@example.com", "later@example.com", "gone@example.com"])
            self.assertEqual(code, 250, text)
            # The first attempt takes ok@, the retry later@, and the bounce
            # for gone@ goes back to the sender through the same smarthost.
            msgs = fake.wait_messages(3, timeout=30)
            self.assertEqual(relay.wait_queue_empty(timeout=30), [])
            msgs = fake.messages
            originals = [m for m in msgs if m.mail_from == SENDER]
            self.assertEqual([m.rcpt_to for m in originals], [["ok@example.com"], ["later@example.com"]])
            self.assertEqual(originals[0].rcpt_rejected[0][0], "later@example.com")
            bounces = [m for m in msgs if m.mail_from == ""]
            self.assertEqual(len(bounces), 1)
            self.assertEqual(bounces[0].rcpt_to, [SENDER])
            self.assertIn(b"gone@example.com", bounces[0].data)
            self.assertIn(b"5.1.1", bounces[0].data)
            self.assertTrue(all("gone@example.com" not in m.rcpt_to for m in msgs))
            fake.assert_no_violations()

    def test_refusal_reaches_a_waiting_client(self):
        fake = self.smarthost()
        fake.rcpt_reply("gone@example.com", 550, "5.1.1 No such user")
        relay = self.relay(fake)
        with relay:
            code, text = self.send(relay, ["gone@example.com"])
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith("5.1.1"), text)
            self.assertNotIn("No such user", text)

    def test_over_the_servers_size_limit_is_refused_without_sending(self):
        fake = self.smarthost(max_message_size=2000)
        relay = self.relay(fake)
        with relay:
            code, text = self.send(relay, ["alice@example.com"], message(body=b"x" * 900 + b"\r\n" * 3 +
                                                                          b"y" * 900 + b"\r\n" + b"z" * 900 + b"\r\n"))
            self.assertEqual(code, 552, text)
            self.assertTrue(text.startswith("5.3.4"), text)
            self.assertEqual(fake.messages, [])
            self.assertTrue(all(not any(c.upper().startswith("MAIL") for c in conn.commands)
                                for conn in fake.connections))

    def test_lost_reply_after_the_dot_is_retried_and_logged_as_possible_duplicate(self):
        fake = self.smarthost()
        fake.drop_at("after_dot_before_reply", times=1)
        relay = self.relay(fake, smtp={"wait_for_delivery": "0s"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"])
            self.assertEqual(code, 250, text)
            msgs = fake.wait_messages(2, timeout=30)
            self.assertEqual([m.acknowledged for m in msgs], [False, True])
            self.assertTrue(relay.wait_log(r"may arrive twice"))
            self.assertEqual(relay.wait_queue_empty(timeout=15), [])
            fake.assert_no_violations()

    def test_connection_reused_for_a_burst_and_closed_when_idle(self):
        fake = self.smarthost()
        relay = self.relay(fake, {"idle_timeout": "2s"})
        with relay:
            for i in range(3):
                code, text = self.send(relay, ["alice@example.com"], message(subject="burst-%d" % i))
                self.assertEqual(code, 250, text)
            msgs = fake.wait_messages(3)
            self.assertEqual(len({m.connection_id for m in msgs}), 1)
            self.assertEqual([m.index_on_connection for m in msgs], [1, 2, 3])
            fake.wait_idle(timeout=10)
            self.assertEqual(fake.connections[0].close_reason, "quit")
            fake.assert_no_violations()

    def test_a_server_that_closed_the_idle_connection_costs_nothing(self):
        fake = self.smarthost(idle_timeout=1.0)
        relay = self.relay(fake, {"idle_timeout": "30s"})
        with relay:
            code, text = self.send(relay, ["alice@example.com"], message(subject="first"))
            self.assertEqual(code, 250, text)
            fake.wait_idle(timeout=10)
            code, text = self.send(relay, ["alice@example.com"], message(subject="second"))
            self.assertEqual(code, 250, text)
            msgs = fake.wait_messages(2)
            self.assertEqual(len({m.connection_id for m in msgs}), 2)
            self.assertEqual(relay.wait_queue_empty(), [])

    def test_parallel_connections_stay_within_the_limit(self):
        fake = self.smarthost()
        fake.delay("dot", 0.5)
        relay = self.relay(fake, {"max_connections": 2}, smtp={"wait_for_delivery": "0s"})
        with relay:
            for i in range(6):
                code, text = self.send(relay, ["r%d@example.com" % i], message(subject="p-%d" % i),
                                       sender="s%d@contoso.example" % i)
                self.assertEqual(code, 250, text)
            fake.wait_messages(6, timeout=30)
            self.assertLessEqual(fake.max_concurrent_connections, 2)
            fake.assert_no_violations()

    def run_command(self, relay, *args):
        relay.write_config()
        return subprocess.run([BINARY, *args, "--config", str(relay.config_path)], capture_output=True, text=True,
                              timeout=60)

    def test_check_provider_and_test_send(self):
        fake = self.smarthost()
        relay = self.relay(fake)
        out = self.run_command(relay, "check-provider", "smarthost")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("ok: 127.0.0.1:%d, TLSv1." % fake.port, out.stdout)
        self.assertIn("certificate verified", out.stdout)
        self.assertIn("AUTH PLAIN as relay@contoso.example: ok", out.stdout)
        self.assertEqual(fake.messages, [])
        out = self.run_command(relay, "test-send", "--provider", "smarthost", "--from", SENDER, "--to",
                               "alice@example.com")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("result: delivered", out.stdout)
        [got] = fake.wait_messages(1)
        self.assertEqual(got.rcpt_to, ["alice@example.com"])
        relay.config["providers"][0]["password"] = "wrong"
        out = self.run_command(relay, "check-provider", "smarthost")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("FAIL: AUTH PLAIN as relay@contoso.example refused: 535", out.stdout)
        self.assertNotIn("wrong", out.stdout)
        fake.assert_no_violations()


class UpstreamXOAuth2Test(WithTestCA):
    def setUp(self):
        self.smtp = FakeSmtpServer(ca=self.ca, xoauth2_errors="microsoft").start()
        self.addCleanup(self.smtp.stop)

    def relay(self, provider):
        p = {"name": "smarthost", "type": "smtp", "host": "127.0.0.1", "port": self.smtp.port,
             "ca_file": self.smtp.ca_file, "auth": "xoauth2"}
        p.update(provider)
        relay = Relay(providers=[p], queue={"retry_delay": "1s", "max_retry_delay": "2s"},
                      smtp={"wait_for_delivery": "20s"})
        self.addCleanup(relay.cleanup)
        return relay

    def microsoft(self, password=None, **app):
        """A fake Entra ID with the tenant, the sending mailbox and the app."""
        ms = FakeMicrosoft(ca=self.ca).start()
        self.addCleanup(ms.stop)
        ms.add_tenant(TENANT)
        ms.add_user(TENANT, SENDER, password=password)
        ms.add_app(TENANT, CLIENT, **app)
        return ms

    def test_entra_client_credentials_token_for_exchange(self):
        ms = self.microsoft(secret=SECRET, roles=("SMTP.SendAsApp",))

        def issued_for_exchange(user, token):
            return any(t.value == token and t.resource == "https://outlook.office365.com" for t in ms.tokens)
        self.smtp.set_token_checker(issued_for_exchange)
        relay = self.relay({"oauth": "entra", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
                            "login_endpoint": ms.base_url})
        with relay:
            for subject in ("one", "two"):
                code, text = send_message(relay.port, SENDER, ["alice@example.com"], message(subject=subject))
                self.assertEqual(code, 250, text)
            msgs = self.smtp.wait_messages(2)
            self.assertEqual([m.auth_mechanism for m in msgs], ["XOAUTH2", "XOAUTH2"])
            self.assertEqual(msgs[0].auth_user, SENDER)
            self.assertEqual(ms.token_count("client_credentials", ok=True), 1)
            self.assertNotIn(SECRET, relay.log())
            self.smtp.assert_no_violations()

    def test_refused_token_is_dropped_and_a_new_one_fetched(self):
        ms = self.microsoft(secret=SECRET, roles=("SMTP.SendAsApp",))
        refused = set()

        def checker(user, token):
            if not refused:
                refused.add(token)
                return False
            return token not in refused and any(t.value == token for t in ms.tokens)
        self.smtp.set_token_checker(checker)
        relay = self.relay({"oauth": "entra", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
                            "login_endpoint": ms.base_url})
        relay.config["smtp"] = {"wait_for_delivery": "0s"}
        with relay:
            code, text = send_message(relay.port, SENDER, ["alice@example.com"], message())
            self.assertEqual(code, 250, text)
            [got] = self.smtp.wait_messages(1, timeout=30)
            self.assertEqual(got.auth_mechanism, "XOAUTH2")
            self.assertEqual(ms.token_count("client_credentials", ok=True), 2)
            self.smtp.assert_no_violations()

    def test_entra_refresh_token_of_a_signed_in_user(self):
        ms = self.microsoft(password=PASSWORD, roles=(), public_client=True,
                            delegated=("SMTP.Send", "offline_access"))

        def delegated_for_smtp(user, token):
            return any(t.value == token and (t.user or "").lower() == user.lower()
                       and t.resource == "https://outlook.office.com" and "SMTP.Send" in t.scopes
                       for t in ms.tokens)
        self.smtp.set_token_checker(delegated_for_smtp)
        relay = self.relay({"oauth": "entra", "auth_mode": "refresh_token", "user": SENDER, "tenant_id": TENANT,
                            "client_id": CLIENT, "login_endpoint": ms.base_url})
        relay.write_config()
        out = subprocess.run([BINARY, "oauth", "login", "--password", "--provider", "smarthost", "--config",
                              str(relay.config_path)], input=PASSWORD + "\n", capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        with relay:
            code, text = send_message(relay.port, SENDER, ["alice@example.com"], message())
            self.assertEqual(code, 250, text)
            [got] = self.smtp.wait_messages(1)
            self.assertEqual(got.auth_user, SENDER)
            self.assertEqual(got.auth_mechanism, "XOAUTH2")
            self.assertNotIn(PASSWORD, relay.log())
            self.smtp.assert_no_violations()

    def test_google_service_account_token_per_user(self):
        google = FakeGoogle(ca=self.ca).start()
        self.addCleanup(google.stop)
        google.add_domain("contoso.example")
        google.add_user(SENDER)
        account = "relay@mailbridge-test.iam.gserviceaccount.com"
        key = google.add_service_account(account)
        google.grant_delegation(key["client_id"], ["https://mail.google.com/"])
        key_dir = Path(tempfile.mkdtemp(prefix="mb-smtp-"))
        self.addCleanup(shutil.rmtree, key_dir, True)
        key_file = key_dir / "service-account.json"
        google.write_key_file(key_file, account)

        def issued(user, token):
            return any(t.value == token and (t.user or "").lower() == user.lower()
                       and "https://mail.google.com/" in t.scopes for t in google.tokens)
        self.smtp.set_token_checker(issued)
        relay = self.relay({"oauth": "google", "service_account_file": str(key_file)})
        with relay:
            code, text = send_message(relay.port, SENDER, ["alice@example.com"], message())
            self.assertEqual(code, 250, text)
            [got] = self.smtp.wait_messages(1)
            self.assertEqual(got.auth_user, SENDER)
            self.assertEqual(google.token_count(user=SENDER, ok=True), 1)
            self.smtp.assert_no_violations()


if __name__ == "__main__":
    unittest.main()
