"""The admin surface through the real binary: a batch with deliveries, a
deferral, a bounce and refused attempts goes through the fake Graph, and is
then found with `mailbridge log` / `mailbridge status` (control socket) and
with the admin HTTP API; /metrics parses as Prometheus text and counts what
was sent; authentication, CSRF and the login lockout hold; readiness follows
the circuit breakers; retention purges old rows at start."""

import http.client
import json
import os
import smtplib
import sqlite3
import subprocess
import time
import unittest

import prometheus_text
from pathlib import Path

from harness import BINARY, Relay, hash_password, preload_env, send_message
from microsoft import CLIENT, SENDER, TENANT, MicrosoftTestCase

SECRET = "graph-secret-value-1"
PASSWORD = "correct horse battery"
TOKEN = "tok-0123456789abcdef-admin"


def message(subject, msg_id):
    return ("From: Scanner <%s>\r\nTo: a@example.com\r\nSubject: %s\r\nMessage-ID: <%s>\r\n\r\n"
            "page 1\r\n" % (SENDER, subject, msg_id)).encode()


class Admin:
    """A small HTTP client for the admin server: keeps the session cookie."""

    def __init__(self, port):
        self.port = port
        self.cookie = None

    def request(self, method, path, body=None, headers=None, token=None, content_type="application/json"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        if self.cookie:
            h["Cookie"] = self.cookie
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = content_type
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        set_cookie = resp.getheader("Set-Cookie")
        if set_cookie:
            pair = set_cookie.split(";", 1)[0]
            self.cookie = None if pair.endswith("=") else pair
        conn.close()
        return resp, raw

    def json(self, method, path, **kw):
        resp, raw = self.request(method, path, **kw)
        return resp.status, json.loads(raw)


class AdminApiTest(MicrosoftTestCase):
    def setUp(self):
        super().setUp()
        self.fake.add_app(TENANT, CLIENT, secret=SECRET)

    def relay(self, admin=None, queue=None, **overrides):
        cfg = {"address": "127.0.0.1:0", "password_hash": hash_password(PASSWORD), "api_token": TOKEN}
        cfg.update(admin or {})
        q = {"retry_delay": "60s", "max_retry_delay": "60s", "bounce_to": "none"}
        q.update(queue or {})
        relay = Relay(providers=[self.graph_provider(SECRET)], admin=cfg, queue=q,
                      smtp={"wait_for_delivery": "0s"}, senders={"allowed": ["@contoso.example"]}, **overrides)
        self.addCleanup(relay.cleanup)
        return relay

    def cli(self, relay, *args):
        out = subprocess.run([BINARY, *args, "--config", str(relay.config_path)],
                             capture_output=True, text=True, timeout=60)
        return out

    def search(self, relay, **params):
        admin = Admin(relay.ports["admin"])
        query = "&".join("%s=%s" % kv for kv in params.items())
        status, body = admin.json("GET", "/api/messages?" + query, token=TOKEN)
        self.assertEqual(status, 200, body)
        return body

    def wait_for(self, relay, predicate, what, timeout=20, **params):
        deadline = time.monotonic() + timeout
        body = None
        while time.monotonic() < deadline:
            body = self.search(relay, **params)
            if predicate(body):
                return body
            time.sleep(0.2)
        self.fail("%s never happened: %r" % (what, body))

    def test_a_batch_is_found_through_the_cli_and_the_api(self):
        relay = self.relay()
        with relay:
            for i in range(2):
                code, text = send_message(relay.port, SENDER, ["a@example.com"],
                                          message("Invoice %d" % i, "ok%d@contoso.example" % i))
                self.assertEqual(code, 250, text)
            self.fake.wait_sent(2)
            self.wait_for(relay, lambda b: b["total"] == 2 and all(m["status"] == "delivered" for m in b["messages"]),
                          "two deliveries")

            # Graph answers 503 once: deferred, next attempt in a minute.
            self.fake.fail_next(1, status=503)
            code, text = send_message(relay.port, SENDER, ["a@example.com"], message("Scan 9:14", "late@contoso.example"))
            self.assertEqual(code, 250, text)
            deferred = self.wait_for(relay, lambda b: b["total"] == 1, "a deferral", status="deferred")["messages"][0]
            self.assertEqual(deferred["subject"], "Scan 9:14")
            self.assertEqual(deferred["code"] // 100, 4)
            self.assertTrue(deferred["error"])

            # No such mailbox in the tenant: bounced.
            code, text = send_message(relay.port, "ghost@contoso.example", ["a@example.com"],
                                      message("From a ghost", "ghost@contoso.example"))
            self.assertEqual(code, 250, text)
            bounced = self.wait_for(relay, lambda b: b["total"] == 1, "a bounce", status="bounced")["messages"][0]
            self.assertEqual(bounced["sender"], "ghost@contoso.example")
            self.assertEqual(bounced["code"] // 100, 5)
            self.assertTrue(bounced["error"])

            # A sender the rules refuse: never queued, recorded as rejected.
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
                s.ehlo()
                self.assertEqual(s.mail("spoof@evil.example")[0], 550)

            # --- the CLI, over the control socket
            out = self.cli(relay, "log", "search", "--status", "deferred")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(deferred["id"], out.stdout)
            self.assertIn("Scan 9:14", out.stdout)
            self.assertIn("1 of 1 messages", out.stdout)

            out = self.cli(relay, "log", "search", "--json", "--since", "1h", "invoice")
            self.assertEqual(out.returncode, 0, out.stderr)
            found = json.loads(out.stdout)
            self.assertEqual(found["total"], 2)
            self.assertEqual({m["status"] for m in found["messages"]}, {"delivered"})

            out = self.cli(relay, "log", "show", bounced["id"])
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("status:      bounced", out.stdout)
            self.assertIn("a@example.com  bounced", out.stdout)

            out = self.cli(relay, "log", "show", "--json", deferred["id"])
            events = json.loads(out.stdout)["history"]["events"]
            self.assertEqual([(e["status"], e["attempt"]) for e in events], [("deferred", 1)])

            deadline = time.monotonic() + 10
            while True:
                out = self.cli(relay, "log", "rejected")
                if "sender not allowed" in out.stdout or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("sender not allowed", out.stdout)
            self.assertIn("from spoof@evil.example", out.stdout)

            out = self.cli(relay, "log", "show", "AAAAAAAAAAAAAAAAAAAA")
            self.assertEqual(out.returncode, 1)
            self.assertIn("no message", out.stderr)

            out = self.cli(relay, "status", "--json")
            self.assertEqual(out.returncode, 0, out.stderr)
            status = json.loads(out.stdout)["status"]
            self.assertEqual(status["totals"]["overall"],
                             {"accepted": 4, "delivered": 2, "deferred": 1, "bounced": 1, "rejected": 1})
            self.assertEqual(status["totals"]["today"]["accepted"], 4)
            self.assertEqual(status["queue"]["depth"], 1)  # the deferred one
            self.assertEqual(status["providers"][0]["name"], "m365")
            self.assertEqual(status["providers"][0]["token"], "ok")
            self.assertGreater(status["providers"][0]["token_expires"], time.time())
            out = self.cli(relay, "status")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("ready:       yes", out.stdout)
            self.assertIn("m365 (graph)  circuit closed, token ok", out.stdout)

            # --- the HTTP API
            admin = Admin(relay.ports["admin"])
            st, body = admin.json("GET", "/api/messages/" + bounced["id"], token=TOKEN)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["history"]["recipients"][0]["status"], "bounced")
            st, body = admin.json("GET", "/api/messages/AAAAAAAAAAAAAAAAAAAA", token=TOKEN)
            self.assertEqual(st, 404, body)
            st, body = admin.json("GET", "/api/messages?sender=ghost&status=bounced", token=TOKEN)
            self.assertEqual([m["id"] for m in body["messages"]], [bounced["id"]])
            st, body = admin.json("GET", "/api/messages?since=2000-01-01T00:00:00Z&limit=1&offset=1", token=TOKEN)
            self.assertEqual((st, body["total"], len(body["messages"])), (200, 4, 1))
            st, body = admin.json("GET", "/api/messages?bogus=1", token=TOKEN)
            self.assertEqual(st, 400, body)
            st, body = admin.json("GET", "/api/rejections", token=TOKEN)
            self.assertEqual([r["reason"] for r in body["rejections"]], ["sender not allowed"])
            st, body = admin.json("GET", "/api/queue", token=TOKEN)
            self.assertEqual([m["id"] for m in body["messages"]], [deferred["id"]])
            st, body = admin.json("GET", "/api/providers", token=TOKEN)
            self.assertEqual(body["providers"][0]["breaker"], "closed")
            st, body = admin.json("POST", "/api/queue/%s/hold" % deferred["id"], token=TOKEN)
            self.assertEqual((st, body), (200, {"ok": True, "id": deferred["id"]}))
            st, body = admin.json("GET", "/api/queue/" + deferred["id"], token=TOKEN)
            self.assertTrue(body["message"]["held"])
            st, body = admin.json("POST", "/api/queue/%s/release" % deferred["id"], token=TOKEN)
            self.assertEqual(st, 200, body)
            # Released means due now: Graph answers this time.
            self.wait_for(relay, lambda b: b["total"] == 1 and b["messages"][0]["status"] == "delivered",
                          "the released message's delivery", q="late@contoso")
            st, body = admin.json("DELETE", "/api/queue/" + deferred["id"], token=TOKEN)
            self.assertEqual(st, 404, body)

            # --- /metrics
            resp, raw = admin.request("GET", "/metrics", token=TOKEN)
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.getheader("Content-Type").startswith("text/plain; version=0.0.4"))
            text = raw.decode()
            families = prometheus_text.parse(text)
            v = prometheus_text.value
            self.assertEqual(v(families, "mailbridge_messages_accepted_total"), 4)
            self.assertEqual(v(families, "mailbridge_recipients_total", provider="m365", status="delivered"), 3)
            self.assertEqual(v(families, "mailbridge_recipients_total", provider="m365", status="deferred"), 1)
            self.assertEqual(v(families, "mailbridge_recipients_total", provider="m365", status="bounced"), 1)
            self.assertEqual(v(families, "mailbridge_rejected_total", reason="sender not allowed"), 1)
            self.assertEqual(v(families, "mailbridge_delivery_duration_seconds_count"), 3)
            self.assertEqual(v(families, "mailbridge_queue_messages"), 0)
            self.assertEqual(v(families, "mailbridge_provider_circuit_open", provider="m365"), 0)
            self.assertEqual(v(families, "mailbridge_provider_token_ok", provider="m365"), 1)
            self.assertEqual(v(families, "mailbridge_ready"), 1)
            # No address, subject or error text anywhere in the exposition.
            for secret in ("example.com", "contoso", "Invoice", "Scan", SECRET, TOKEN):
                self.assertNotIn(secret, text)
            self.assertNotIn(TOKEN, relay.log())
            self.assertNotIn(PASSWORD, relay.log())

    def test_authentication_and_csrf(self):
        relay = self.relay()
        with relay:
            admin = Admin(relay.ports["admin"])
            # Health is open by default, metrics and the API are not.
            resp, raw = admin.request("GET", "/healthz")
            self.assertEqual((resp.status, raw), (200, b"ok\n"))
            st, body = admin.json("GET", "/healthz/ready")
            self.assertEqual((st, body), (200, {"ready": True, "problems": []}))
            resp, _ = admin.request("GET", "/metrics")
            self.assertEqual(resp.status, 401)
            st, body = admin.json("GET", "/api/status")
            self.assertEqual(st, 401, body)
            self.assertEqual(admin.request("GET", "/api/status")[0].getheader("WWW-Authenticate"),
                             'Bearer realm="mailbridge"')
            st, _ = admin.json("GET", "/api/status", token="not-the-token-at-all")
            self.assertEqual(st, 401)

            # Bearer token: no CSRF header needed (no ambient credential).
            st, body = admin.json("POST", "/api/queue/flush", token=TOKEN)
            self.assertEqual((st, body), (200, {"ok": True, "count": 0}))

            # Password sign-in gives a session cookie and a CSRF token.
            st, body = admin.json("POST", "/api/login", body={"password": "wrong"})
            self.assertEqual(st, 401, body)
            self.assertIsNone(admin.cookie)
            resp, raw = admin.request("POST", "/api/login", body={"password": PASSWORD})
            self.assertEqual(resp.status, 200, raw)
            cookie = resp.getheader("Set-Cookie")
            self.assertIn("HttpOnly", cookie)
            self.assertIn("SameSite=Strict", cookie)
            csrf = json.loads(raw)["csrf_token"]
            self.assertGreaterEqual(len(csrf), 40)
            st, body = admin.json("GET", "/api/status")
            self.assertEqual(st, 200, body)
            st, body = admin.json("GET", "/api/session")
            self.assertEqual(body["csrf_token"], csrf)

            # A state change with the cookie needs the CSRF token.
            st, body = admin.json("POST", "/api/queue/flush")
            self.assertEqual(st, 403, body)
            st, body = admin.json("POST", "/api/queue/flush", headers={"X-CSRF-Token": "x" * 43})
            self.assertEqual(st, 403, body)
            st, body = admin.json("POST", "/api/queue/flush", headers={"X-CSRF-Token": csrf})
            self.assertEqual(st, 200, body)
            # A cross-site form post cannot send JSON.
            resp, raw = admin.request("POST", "/api/queue/flush", body=b"a=1",
                                      content_type="application/x-www-form-urlencoded",
                                      headers={"X-CSRF-Token": csrf})
            self.assertEqual(resp.status, 415, raw)

            st, body = admin.json("POST", "/api/logout", headers={"X-CSRF-Token": csrf})
            self.assertEqual(st, 200, body)
            self.assertIsNone(admin.cookie)
            admin.cookie = cookie.split(";", 1)[0]  # the old cookie is dead
            st, _ = admin.json("GET", "/api/status")
            self.assertEqual(st, 401)

            # Wrong methods, unknown paths, oversized bodies.
            admin.cookie = None
            st, _ = admin.json("GET", "/api/login")
            self.assertEqual(st, 405)
            st, _ = admin.json("GET", "/api/nothing-here", token=TOKEN)
            self.assertEqual(st, 404)
            resp, _ = admin.request("POST", "/api/login", body=b'{"password":"' + b"x" * 70000 + b'"}')
            self.assertEqual(resp.status, 413)

            # Five wrong sign-ins lock the address out.
            for _ in range(5):
                st, _ = admin.json("POST", "/api/login", body={"password": "guess"})
                self.assertIn(st, (401, 429))
            resp, raw = admin.request("POST", "/api/login", body={"password": PASSWORD})
            self.assertEqual(resp.status, 429, raw)
            self.assertEqual(resp.getheader("Retry-After"), "900")
            self.assertNotIn(PASSWORD, relay.log())

    def test_public_metrics_and_readiness_with_every_circuit_open(self):
        relay = self.relay(admin={"public_metrics": True}, queue={"breaker_failures": 1, "breaker_cooldown": "10m"})
        with relay:
            admin = Admin(relay.ports["admin"])
            resp, raw = admin.request("GET", "/metrics")
            self.assertEqual(resp.status, 200)
            prometheus_text.parse(raw.decode())
            self.fake.fail_next(5, status=503)
            code, text = send_message(relay.port, SENDER, ["a@example.com"], message("x", "cb@contoso.example"))
            self.assertEqual(code, 250, text)
            deadline = time.monotonic() + 20
            st, body = None, None
            while time.monotonic() < deadline:
                st, body = admin.json("GET", "/healthz/ready")
                if st == 503:
                    break
                time.sleep(0.2)
            self.assertEqual(st, 503, body)
            self.assertEqual(body["ready"], False)
            self.assertIn("every provider's circuit breaker is open", body["problems"][0])
            families = prometheus_text.parse(admin.request("GET", "/metrics")[1].decode())
            self.assertEqual(prometheus_text.value(families, "mailbridge_provider_circuit_open", provider="m365"), 1)
            self.assertEqual(prometheus_text.value(families, "mailbridge_ready"), 0)
            # Liveness stays green: the process serves.
            self.assertEqual(admin.request("GET", "/healthz")[0].status, 200)

    def test_retention_purges_old_rows_at_start(self):
        relay = self.relay(tracker={"retention_days": 7})
        relay.start()
        for i in range(2):
            code, text = send_message(relay.port, SENDER, ["a@example.com"], message("m%d" % i, "r%d@c.example" % i))
            self.assertEqual(code, 250, text)
        self.wait_for(relay, lambda b: b["total"] == 2 and all(m["status"] == "delivered" for m in b["messages"]),
                      "two deliveries")
        self.assertEqual(relay.stop(), 0)
        # Make one of them eight days old, as if time had passed.
        db = sqlite3.connect(str(relay.state_dir / "tracker.db"))
        old = int((time.time() - 8 * 86400) * 1000)
        db.execute("UPDATE messages SET arrived = ? WHERE message_id = '<r0@c.example>'", (old,))
        db.commit()
        db.close()
        relay.start()
        body = self.wait_for(relay, lambda b: b["total"] == 1, "the purge at start")
        self.assertEqual(body["messages"][0]["message_id"], "<r1@c.example>")
        self.assertEqual(relay.stop(), 0)
        db = sqlite3.connect(str(relay.state_dir / "tracker.db"))
        self.assertEqual(db.execute("SELECT COUNT(*) FROM recipients").fetchone()[0], 1)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM events").fetchone()[0], 1)
        db.close()

    def test_log_files_and_their_retention(self):
        relay = self.relay()
        logs = relay.dir / "logs"
        logs.mkdir()
        today = time.strftime("%Y-%m-%d")
        yesterday = time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400))
        for name in ("mailbridge_2020-01-01.log", "mailbridge_%s.log" % yesterday, "notes.txt"):
            (logs / name).write_text("old\n")
        relay.config["logging"]["file"] = str(logs / "mailbridge.log")
        relay.config["logging"]["retention_days"] = 3
        with relay:
            deadline = time.monotonic() + 10
            while (logs / "mailbridge_2020-01-01.log").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(sorted(p.name for p in logs.iterdir()),
                             sorted({"mailbridge_%s.log" % yesterday, "mailbridge_%s.log" % today, "notes.txt"}))
            # The old files go before the relay logs "ready": wait for the line.
            todays = logs / ("mailbridge_%s.log" % today)
            deadline = time.monotonic() + 10
            while "ready" not in todays.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("ready", todays.read_text())
            self.assertIn("deleted 1 older than 3 days", relay.log())

    def test_an_unwritable_mail_log_never_stops_mail(self):
        faultfs = os.environ.get("MAILBRIDGE_FAULTFS") or str(
            Path(BINARY).resolve().parents[2] / "tests" / "libfaultfs.so")
        self.assertTrue(Path(faultfs).is_file(), "faultfs shim not found at " + faultfs)
        relay = self.relay()
        trigger = relay.dir / "faultfs.armed"
        relay.env = preload_env(faultfs)
        relay.env.update({"FAULTFS_MATCH": str(relay.state_dir / "tracker.db"), "FAULTFS_FAIL": "write:EIO",
                          "FAULTFS_TRIGGER": str(trigger)})
        with relay:
            trigger.write_text("armed\n")  # after start: the database was created and opened
            code, text = send_message(relay.port, SENDER, ["a@example.com"], message("x", "io@contoso.example"))
            self.assertEqual(code, 250, text)
            self.fake.wait_sent(1)
            admin = Admin(relay.ports["admin"])
            deadline = time.monotonic() + 15
            while True:
                st, body = admin.json("GET", "/api/status", token=TOKEN)
                tracker = body["status"]["tracker"]
                if not tracker["writable"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertFalse(tracker["writable"], body)
            self.assertTrue(tracker["last_error"])
            self.assertGreater(tracker["dropped"], 0)
            self.assertEqual(body["status"]["totals"]["overall"]["delivered"], 1)
            families = prometheus_text.parse(admin.request("GET", "/metrics", token=TOKEN)[1].decode())
            self.assertEqual(prometheus_text.value(families, "mailbridge_tracker_writable"), 0)
            self.assertIn("tracker", relay.log().lower())
            # The disk recovers: later mail is recorded again.
            trigger.unlink()
            code, text = send_message(relay.port, SENDER, ["a@example.com"], message("y", "ok@contoso.example"))
            self.assertEqual(code, 250, text)
            self.wait_for(relay, lambda b: b["total"] == 1 and b["messages"][0]["status"] == "delivered",
                          "the next message in the log", q="ok@contoso")

    def test_privacy_settings_show_in_the_api(self):
        relay = self.relay(tracker={"masking": "partial", "store_subject": False})
        with relay:
            code, text = send_message(relay.port, SENDER, ["alice@example.com"],
                                      message("Salary review", "pay@contoso.example"))
            self.assertEqual(code, 250, text)
            body = self.wait_for(relay, lambda b: b["total"] == 1 and b["messages"][0]["status"] == "delivered",
                                 "the delivery")
            m = body["messages"][0]
            self.assertEqual(m["subject"], "***")
            self.assertEqual(m["sender"], "s*****r@c*****o.example")
            self.assertEqual(m["recipients"], ["a***e@e*****e.com"])
            # Searching for the clear text finds nothing: it was never stored.
            self.assertEqual(self.search(relay, q="alice")["total"], 0)
            self.assertEqual(self.search(relay, q="Salary")["total"], 0)
            out = self.cli(relay, "log", "show", m["id"])
            self.assertNotIn("alice", out.stdout)
            self.assertNotIn("Salary", out.stdout)

    def test_admin_off_and_tls(self):
        off = self.relay(admin={"address": "off"})
        with off:
            self.assertNotIn("admin", off.ports)
        secure = self.relay(admin={"tls": True})
        with secure:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", secure.ports["admin"], timeout=10, context=ctx)
            conn.request("POST", "/api/login", body=json.dumps({"password": PASSWORD}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            self.assertIn("; Secure", resp.getheader("Set-Cookie"))
            conn.close()


if __name__ == "__main__":
    unittest.main()
