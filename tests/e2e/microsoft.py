"""What the end-to-end tests against the fake Entra ID + Graph share: a test
CA per test class, a fresh FakeMicrosoft per test with the tenant and the
sending mailbox registered, and the `graph` provider block pointing at it.
The app registration is left to each test (its roles and credentials are
often what the test is about)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from fake_microsoft import FakeMicrosoft  # noqa: E402
from with_ca import WithTestCA  # noqa: E402

TENANT = "contoso.example"
CLIENT = "0a1b2c3d-1111-2222-3333-444455556666"
SENDER = "scanner@contoso.example"


class MicrosoftTestCase(WithTestCA):
    def setUp(self):
        self.fake = FakeMicrosoft(ca=self.ca).start()
        self.addCleanup(self.fake.stop)
        self.fake.add_tenant(TENANT)
        self.fake.add_user(TENANT, SENDER)

    def graph_provider(self, secret, **keys):
        """The provider `m365` of type graph, talking to the fake."""
        p = {"name": "m365", "type": "graph", "tenant_id": TENANT, "client_id": CLIENT,
             "client_secret": secret, "login_endpoint": self.fake.base_url,
             "graph_endpoint": self.fake.base_url, "ca_file": self.fake.ca_file}
        p.update(keys)
        return p
