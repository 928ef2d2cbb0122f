"""What the self-tests of the HTTPS fakes (test_fake_microsoft.py,
test_fake_google.py) share: a test CA per test class, a fresh fake per test
on it, and requests to the fake with plain urllib over TLS, trusting the
test CA."""

import json
import sys
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from test_ca import TestCA  # noqa: E402


def mime_message(frm, to, message_id, extra=b"", body=b"Hello.\r\n"):
    """A small text/plain message; `extra`: more header lines (CRLF-ended)."""
    return (b"From: " + frm.encode() + b"\r\n"
            b"To: " + to.encode() + b"\r\n" + extra +
            b"Subject: test\r\n"
            b"Message-ID: " + message_id.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n" + body)


def in_threads(n, fn, timeout=20):
    """Calls fn() on `n` threads at once; returns the list of the results
    of those that finished within `timeout` seconds, in finishing order."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results


class HttpsFakeTestCase(unittest.TestCase):
    """A test of an HTTPS fake: `fake_class` is started for each test as
    self.fake, with the class's TestCA (cls.ca; cls.ctx is a client
    context trusting it)."""

    fake_class = None
    http_timeout = 20

    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.ctx = cls.ca.client_context()

    @classmethod
    def tearDownClass(cls):
        cls.ca.cleanup()

    def setUp(self):
        self.fake = self.fake_class(ca=self.ca).start()
        self.addCleanup(self.fake.stop)

    def http(self, method, path, body=None, headers=None):
        """(status, headers, body bytes) of a request to `path` under the
        fake's base_url (or to a whole https:// URL)."""
        url = path if path.startswith("https://") else self.fake.base_url + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=self.http_timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def post_form(self, path, form, headers=None):
        """POSTs `form` url-encoded, as to a token endpoint; (status,
        headers, the JSON body parsed)."""
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        hdrs.update(headers or {})
        status, h, body = self.http("POST", path, urllib.parse.urlencode(form).encode(), hdrs)
        return status, h, json.loads(body)

    def call(self, method, path, token=None, body=None, ctype=None, headers=None):
        """An API request with a Bearer `token` and a Content-Type `ctype`
        when given; (status, headers, the JSON body parsed or None)."""
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = "Bearer " + token
        if ctype:
            hdrs["Content-Type"] = ctype
        status, h, raw = self.http(method, path, body, hdrs)
        return status, h, (json.loads(raw) if raw else None)
