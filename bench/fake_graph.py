"""What the scenarios that relay to Microsoft Graph share: the e2e test
harness (tests/e2e/harness.py) pointed at the binary under test, and the
fake Entra ID + Graph of tests/fakes over TLS with one tenant, one sending
mailbox and one app registration, with the `graph` provider block that talks
to it."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TENANT = "contoso.example"
CLIENT = "0a1b2c3d-1111-2222-3333-444455556666"
SENDER = "scanner@contoso.example"
SECRET = "bench-secret-value-0123"


def import_harness(binary):
    """tests/e2e/harness.py, running `binary`."""
    os.environ["MAILBRIDGE_BIN"] = str(binary)
    for sub in ("tests/e2e", "tests/fakes"):
        path = str(ROOT / sub)
        if path not in sys.path:
            sys.path.insert(0, path)
    import harness  # noqa: E402
    harness.BINARY = str(binary)
    return harness


class FakeGraph:
    """A started fake with TENANT, SENDER and the app CLIENT (roles as
    given); `provider` is the provider block for it. Use as a context
    manager, or call close()."""

    def __init__(self, roles=("Mail.Send",)):
        from fake_microsoft import FakeMicrosoft
        from test_ca import TestCA
        self.ca = TestCA()
        self.fake = FakeMicrosoft(ca=self.ca).start()
        self.fake.add_tenant(TENANT)
        self.fake.add_user(TENANT, SENDER)
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=roles)
        self.provider = {"name": "m365", "type": "graph", "tenant_id": TENANT, "client_id": CLIENT,
                         "client_secret": SECRET, "login_endpoint": self.fake.base_url,
                         "graph_endpoint": self.fake.base_url, "ca_file": self.fake.ca_file}

    def close(self):
        self.fake.stop()
        self.ca.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
