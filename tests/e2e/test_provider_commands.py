"""The administrator commands for a Graph provider: `mailbridge
check-provider` (diagnosis without sending) and `mailbridge test-send` (one
test message), run as the real binary against the fake Entra ID + Graph of
tests/fakes over TLS with a test CA."""

import json
import subprocess
import time
import unittest
from pathlib import Path

from harness import BINARY, Relay
from microsoft import CLIENT, SENDER, TENANT, MicrosoftTestCase

SECRET = "Qm8~provider-check-secret-0123456"
ALL_ROLES = ("Mail.Send", "Mail.ReadWrite", "User.Read.All", "Application.Read.All")
DAY = 86400


class ProviderCommandsTest(MicrosoftTestCase):
    def config(self, secret=SECRET):
        """Writes a configuration with the provider `m365`; returns its path."""
        relay = Relay(providers=[self.graph_provider(secret)])  # only to write its configuration file
        self.addCleanup(relay.cleanup)
        relay.write_config()
        return str(relay.config_path)

    def run_cli(self, *args):
        out = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60)
        text = out.stdout + out.stderr
        self.assertNotIn(SECRET, text)
        self.assertNotIn("wrong-secret-value", text)
        return out.returncode, text

    def check(self, *extra, secret=SECRET):
        return self.run_cli("check-provider", "m365", "--config", self.config(secret), *extra)

    # ---- check-provider ---------------------------------------------------

    def test_check_ok(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES)
        rc, text = self.check("--sender", SENDER)
        self.assertEqual(rc, 0, text)
        self.assertIn("ok: access token acquired", text)
        self.assertIn("ok: the token has Mail.Send", text)
        self.assertIn("ok: Mail.ReadWrite granted", text)
        self.assertIn("ok: sender %s is the user %s" % (SENDER, SENDER), text)
        self.assertIn("ok: the client secret 'mailbridge' in use expires", text)
        self.assertNotIn("FAIL", text)
        self.assertEqual(self.fake.sent, [])

    def test_no_roles_means_no_admin_consent(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=())
        rc, text = self.check()
        self.assertEqual(rc, 1, text)
        self.assertIn("FAIL: the token carries no application permissions", text)
        self.assertIn("admin consent", text)
        self.assertIn("warn: cannot read the app's credentials; grant Application.Read.All", text)

    def test_wrong_secret(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES)
        rc, text = self.check(secret="wrong-secret-value")
        self.assertEqual(rc, 1, text)
        self.assertIn("FAIL: no access token:", text)
        self.assertIn("7000215", text)

    def test_unknown_sender(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES)
        rc, text = self.check("--sender", "nobody@contoso.example")
        self.assertEqual(rc, 1, text)
        self.assertIn("FAIL: sender nobody@contoso.example: Graph 404 ErrorInvalidUser", text)
        self.assertIn("— fix: ", text)

    def test_sender_without_mailbox(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES)
        self.fake.add_user(TENANT, "nomail@contoso.example", mailbox=False)
        rc, text = self.check("--sender", "nomail@contoso.example")
        self.assertEqual(rc, 1, text)
        self.assertIn("FAIL: sender nomail@contoso.example is a user", text)
        self.assertIn("without a mailbox", text)

    def test_expired_secret(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES,
                          secret_end=time.time() - DAY)
        rc, text = self.check()
        self.assertEqual(rc, 1, text)
        self.assertIn("FAIL: no access token:", text)
        self.assertIn("7000222", text)

    def test_secret_expiring_soon(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES,
                          secret_end=time.time() + 10 * DAY + 3600)
        rc, text = self.check()
        self.assertEqual(rc, 0, text)
        self.assertIn("warn: the client secret 'mailbridge' in use expires", text)
        self.assertIn("(in 10 days)", text)

    def test_certificate_expiry_is_shown(self):
        cert = self.ca.make_client_cert("mailbridge-app")
        self.fake.add_app(TENANT, CLIENT, cert_pem=cert.cert_pem, roles=ALL_ROLES)
        path = self.config()
        relay_cfg = Path(path)
        cfg = json.loads(relay_cfg.read_text())
        p = cfg["providers"][0]
        del p["client_secret"]
        p["cert_file"] = str(cert.cert_file)
        p["key_file"] = str(cert.key_file)
        relay_cfg.write_text(json.dumps(cfg))
        rc, text = self.run_cli("check-provider", "m365", "--config", path)
        self.assertEqual(rc, 0, text)
        self.assertIn("ok: the local certificate (thumbprint", text)
        self.assertIn("ok: the certificate", text)
        self.assertIn("in use expires", text)

    def test_usage_errors(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=ALL_ROLES)
        rc, text = self.run_cli("check-provider", "nope", "--config", self.config())
        self.assertEqual(rc, 2, text)
        self.assertIn("no provider named 'nope'", text)
        rc, text = self.run_cli("check-provider", "--config", self.config())
        self.assertEqual(rc, 2, text)
        rc, text = self.run_cli("check-provider", "outbox", "--config", "/nonexistent.yaml")
        self.assertEqual(rc, 2, text)

    # ---- test-send --------------------------------------------------------

    def test_send(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET)
        rc, text = self.run_cli("test-send", "--provider", "m365", "--from", SENDER,
                                "--to", "alice@example.com", "--config", self.config(),
                                "--subject", "hello from the test")
        self.assertEqual(rc, 0, text)
        [sent] = self.fake.wait_sent(1)
        self.assertEqual(sent.mailbox.lower(), SENDER)
        self.assertEqual(sent.recipients, ["alice@example.com"])
        self.assertIn(b"Subject: hello from the test\r\n", sent.mime)
        self.assertIn(b"Message-ID: <mailbridge-test.", sent.mime)
        self.assertIn(b"'m365'", sent.mime)
        self.assertIn("token: ok", text)
        self.assertIn("request: POST", text)
        self.assertIn("result: delivered: 250 2.0.0", text)

    def test_send_as_denied(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET)
        self.fake.deny_send_as(SENDER)
        rc, text = self.run_cli("test-send", "--provider", "m365", "--from", SENDER,
                                "--to", "alice@example.com", "--config", self.config())
        self.assertEqual(rc, 1, text)
        self.assertIn("result: refused: 550 5.7.60", text)
        self.assertEqual(self.fake.sent, [])

    def test_send_with_a_wrong_secret(self):
        self.fake.add_app(TENANT, CLIENT, secret=SECRET)
        rc, text = self.run_cli("test-send", "--provider", "m365", "--from", SENDER,
                                "--to", "alice@example.com", "--config",
                                self.config("wrong-secret-value"))
        self.assertEqual(rc, 1, text)
        self.assertIn("token: FAIL", text)
        self.assertIn("7000215", text)


if __name__ == "__main__":
    unittest.main()
