"""One mixed batch routed to every kind of provider at once: two Microsoft
365 tenants through Graph (after a merger: one fake Entra ID + Graph with
two tenants and two app registrations, each provider with its own tokens),
a Google Workspace subsidiary through the Gmail API, and an old smarthost
over SMTP for the rest. Each message must arrive at the right fake, sent
as the right mailbox, and nowhere else."""

import sys
import shutil
import tempfile
import unittest
from pathlib import Path

from harness import Relay, send_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from fake_google import GMAIL_SEND, FakeGoogle  # noqa: E402
from fake_microsoft import FakeMicrosoft  # noqa: E402
from fake_smtp_server import FakeSmtpServer  # noqa: E402
from with_ca import WithTestCA  # noqa: E402

TENANT_A, CLIENT_A, SECRET_A = "contoso.example", "0a1b2c3d-1111-2222-3333-444455556666", "Qm8~secret-a-0123"
TENANT_B, CLIENT_B, SECRET_B = "fabrikam.example", "0a1b2c3d-7777-8888-9999-444455556666", "Qm8~secret-b-0123"
SA = "relay@mailbridge-test.iam.gserviceaccount.com"


class MixedBatchRoutingTest(WithTestCA):
    def setUp(self):
        self.ms = FakeMicrosoft(ca=self.ca).start()
        self.addCleanup(self.ms.stop)
        for tenant, client, secret in ((TENANT_A, CLIENT_A, SECRET_A), (TENANT_B, CLIENT_B, SECRET_B)):
            self.ms.add_tenant(tenant)
            self.ms.add_user(tenant, "scanner@" + tenant)
            self.ms.add_app(tenant, client, secret=secret)
        self.google = FakeGoogle(ca=self.ca).start()
        self.addCleanup(self.google.stop)
        self.google.add_domain("subsidiary.example")
        self.google.add_user("erp@subsidiary.example")
        key = self.google.add_service_account(SA)
        self.google.grant_delegation(key["client_id"], [GMAIL_SEND])
        key_dir = Path(tempfile.mkdtemp(prefix="mb-route-"))
        self.addCleanup(shutil.rmtree, key_dir, True)
        self.key_file = key_dir / "sa.json"
        self.google.write_key_file(self.key_file, SA)
        self.smtp = FakeSmtpServer(ca=self.ca).start()
        self.addCleanup(self.smtp.stop)
        self.smtp.add_user("relay@legacy.example", "smarthost-pw")

    def graph(self, name, tenant, client, secret):
        return {"name": name, "type": "graph", "tenant_id": tenant, "client_id": client, "client_secret": secret,
                "login_endpoint": self.ms.base_url, "graph_endpoint": self.ms.base_url, "ca_file": self.ms.ca_file}

    def test_each_message_reaches_its_provider(self):
        providers = [
            {"name": "smarthost", "type": "smtp", "host": "127.0.0.1", "port": self.smtp.port,
             "ca_file": self.smtp.ca_file, "auth": "plain", "username": "relay@legacy.example",
             "password": "smarthost-pw"},
            self.graph("contoso", TENANT_A, CLIENT_A, SECRET_A),
            self.graph("fabrikam", TENANT_B, CLIENT_B, SECRET_B),
            {"name": "workspace", "type": "gmail", "service_account_file": str(self.key_file),
             "api_endpoint": self.google.base_url, "ca_file": self.google.ca_file},
        ]
        routes = [{"from": ["@contoso.example"], "provider": "contoso"},
                  {"from": ["@fabrikam.example"], "provider": "fabrikam"},
                  {"from": ["@subsidiary.example"], "provider": "workspace"}]
        relay = Relay(providers=providers, routes=routes, smtp={"wait_for_delivery": "0s"},
                      queue={"retry_delay": "1s", "max_retry_delay": "2s"})
        self.addCleanup(relay.cleanup)
        batch = [("scanner@contoso.example", "m365-a-%d"), ("scanner@fabrikam.example", "m365-b-%d"),
                 ("erp@subsidiary.example", "gmail-%d"), ("monitor@legacy.example", "smtp-%d")]
        with relay:
            for i in range(3):
                for sender, subject in batch:
                    s = subject % i
                    msg = ("From: %s\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, s)).encode()
                    code, text = send_message(relay.port, sender, ["alice@example.com"], msg)
                    self.assertEqual(code, 250, text)
            self.assertEqual(relay.wait_queue_empty(timeout=30), [])
            graph = self.ms.wait_sent(6, timeout=20)
            gmail = self.google.wait_sent(3, timeout=20)
            smtp = self.smtp.wait_messages(3, timeout=20)

            def subjects(items, get):
                return sorted(get(m) for m in items)
            by_mailbox = {}
            for m in graph:
                by_mailbox.setdefault(m.mailbox.lower(), []).append(m.subject)
            self.assertEqual(sorted(by_mailbox["scanner@contoso.example"]), ["m365-a-0", "m365-a-1", "m365-a-2"])
            self.assertEqual(sorted(by_mailbox["scanner@fabrikam.example"]), ["m365-b-0", "m365-b-1", "m365-b-2"])
            self.assertEqual(subjects(gmail, lambda m: m.subject), ["gmail-0", "gmail-1", "gmail-2"])
            self.assertTrue(all(m.user.lower() == "erp@subsidiary.example" for m in gmail))
            self.assertEqual(subjects(smtp, lambda m: m.email["Subject"]), ["smtp-0", "smtp-1", "smtp-2"])
            self.assertTrue(all(m.mail_from == "monitor@legacy.example" for m in smtp))
            # Each tenant's provider used its own app registration: one token each.
            self.assertEqual(self.ms.token_count("client_credentials", ok=True), 2)
            self.assertEqual({t.client_id for t in self.ms.tokens}, {CLIENT_A, CLIENT_B})
            self.smtp.assert_no_violations()


if __name__ == "__main__":
    unittest.main()
