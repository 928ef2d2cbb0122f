"""The fake Microsoft identity platform + Graph (tests/fakes/fake_microsoft.py)
answers as the real services do, so that the relay's end-to-end tests against
it mean something. Plain urllib over TLS, trusting the test CA; no relay."""

import base64
import hashlib
import json
import os
import re
import sys
import time
import unittest
import urllib.error
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

import https_fake_client  # noqa: E402
from fake_microsoft import FakeMicrosoft  # noqa: E402
from test_ca import b64url, b64url_decode  # noqa: E402

TENANT = "contoso.example"
CLIENT = "11111111-2222-3333-4444-555555555555"
SECRET = "Xy8Q~s3cret.value-that-is-long"
MAILBOX = "relay@contoso.example"
GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def mime_message(to="alice@example.com", extra=b"", body=b"Hello.\r\n"):
    return https_fake_client.mime_message("Relay <relay@contoso.example>", to,
                                          "<t1@contoso.example>", extra, body)


def b64_76(data):
    """base64 wrapped at 76 like the Graph docs."""
    return base64.encodebytes(data)


class FakeMicrosoftTestBase(https_fake_client.HttpsFakeTestCase):
    fake_class = FakeMicrosoft

    def setUp(self):
        super().setUp()
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=("Mail.Send", "Mail.ReadWrite"))
        self.fake.add_user(TENANT, MAILBOX, password="correct horse")

    # ---- helpers -----------------------------------------------------------

    def token_request(self, form, tenant=TENANT, headers=None):
        return self.post_form("/%s/oauth2/v2.0/token" % tenant, form, headers)

    def app_token(self, client_id=CLIENT, secret=SECRET):
        status, _, body = self.token_request({
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret, "scope": GRAPH_SCOPE})
        self.assertEqual(status, 200, body)
        return body["access_token"]

    graph = https_fake_client.HttpsFakeTestCase.call

    def send_mime(self, token, mime, mailbox=MAILBOX):
        return self.graph("POST", "/v1.0/users/%s/sendMail" % mailbox, token, b64_76(mime),
                          "text/plain")

    def assertAadError(self, status, body, want_status, error, code):
        self.assertEqual(status, want_status, body)
        self.assertEqual(body["error"], error)
        self.assertEqual(body["error_codes"], [code])
        self.assertTrue(body["error_description"].startswith("AADSTS%d: " % code),
                        body["error_description"])
        for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
            self.assertIn(part, body["error_description"])
        self.assertRegex(body["timestamp"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")
        self.assertRegex(body["trace_id"], GUID_RE)
        self.assertRegex(body["correlation_id"], GUID_RE)
        self.assertIn("error?code=%d" % code, body["error_uri"])

    def assertGraphError(self, status, body, want_status, code):
        self.assertEqual(status, want_status, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertIsInstance(body["error"]["message"], str)
        inner = body["error"]["innerError"]
        self.assertRegex(inner["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
        self.assertRegex(inner["request-id"], GUID_RE)


class TokenEndpointTest(FakeMicrosoftTestBase):
    def test_client_secret_success_shape(self):
        status, h, body = self.token_request({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": GRAPH_SCOPE})
        self.assertEqual(status, 200)
        self.assertEqual(set(body), {"token_type", "expires_in", "ext_expires_in",
                                     "access_token"})
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3599)
        self.assertEqual(body["ext_expires_in"], 3599)
        self.assertEqual(h["Cache-Control"], "no-store, no-cache")
        self.assertTrue(h["Content-Type"].startswith("application/json"))
        [tok] = self.fake.tokens
        self.assertTrue(tok.app_only)
        self.assertEqual(tok.roles, {"Mail.Send", "Mail.ReadWrite"})
        self.assertEqual(self.fake.token_requests["client_credentials"], 1)
        self.assertEqual(self.fake.token_count("client_credentials", ok=True), 1)

    def test_basic_client_auth(self):
        basic = base64.b64encode(("%s:%s" % (urllib.parse.quote_plus(CLIENT),
                                             urllib.parse.quote_plus(SECRET))).encode()).decode()
        status, _, body = self.token_request(
            {"grant_type": "client_credentials", "scope": GRAPH_SCOPE},
            headers={"Authorization": "Basic " + basic})
        self.assertEqual(status, 200, body)
        self.assertIn("access_token", body)

    def test_wrong_secret(self):
        status, _, body = self.token_request({
            "grant_type": "client_credentials", "client_id": CLIENT,
            "client_secret": "8a2f0c1e-secret-id", "scope": GRAPH_SCOPE},
            headers={"client-request-id": "0b7f2d5e-1111-4222-8333-944455556666"})
        self.assertAadError(status, body, 401, "invalid_client", 7000215)
        self.assertEqual(body["correlation_id"], "0b7f2d5e-1111-4222-8333-944455556666")
        log = self.fake.requests[-1]
        self.assertEqual((log.endpoint, log.status, log.error), ("token", 401, 7000215))
        self.assertNotIn(SECRET, repr(self.fake.requests) + repr(self.fake.token_events))

    def test_other_client_errors(self):
        self.fake.add_app(TENANT, "expired-app", secret="old", secret_expired=True)
        self.fake.add_app(TENANT, "no-sp-app", secret="x", service_principal=False)
        cases = [
            ({"client_id": "expired-app", "client_secret": "old"}, TENANT, 401, "invalid_client",
             7000222),
            ({"client_id": "nobody", "client_secret": "x"}, TENANT, 400, "unauthorized_client",
             700016),
            ({"client_id": "no-sp-app", "client_secret": "x"}, TENANT, 401, "invalid_client",
             7000229),
            ({"client_id": CLIENT, "client_secret": SECRET}, "fabrikam.example", 400,
             "invalid_request", 90002),
            ({"client_id": CLIENT}, TENANT, 401, "invalid_client", 7000218),
        ]
        for form, tenant, st, err, code in cases:
            with self.subTest(code=code):
                form = dict(form, grant_type="client_credentials", scope=GRAPH_SCOPE)
                status, _, body = self.token_request(form, tenant=tenant)
                self.assertAadError(status, body, st, err, code)

    def test_scope_must_be_default(self):
        status, _, body = self.token_request({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/Mail.Send"})
        self.assertAadError(status, body, 400, "invalid_scope", 1002012)

    def test_certificate_assertion(self):
        cert = self.ca.make_client_cert()
        self.fake.add_app(TENANT, "cert-app", cert_pem=cert.cert_pem)
        aud = self.fake.token_url(TENANT)

        def ask(jwt):
            return self.token_request({
                "grant_type": "client_credentials", "client_id": "cert-app",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": jwt, "scope": GRAPH_SCOPE})

        good = cert.assertion("cert-app", aud)                    # PS256 + x5t#S256
        status, _, body = ask(good)
        self.assertEqual(status, 200, body)
        status, _, body = ask(cert.assertion("cert-app", aud, alg="RS256"))   # RS256 + x5t
        self.assertEqual(status, 200, body)

        # Claims changed after signing: the signature no longer matches.
        h, p, s = good.split(".")
        claims = json.loads(b64url_decode(p))
        claims["sub"] = claims["iss"] = "cert-app"
        claims["exp"] += 60
        tampered = h + "." + b64url(json.dumps(claims).encode()) + "." + s
        status, _, body = ask(tampered)
        self.assertAadError(status, body, 401, "invalid_client", 700027)

        # Signed by a key the app does not know.
        other = self.ca.make_client_cert("other")
        status, _, body = ask(other.assertion("cert-app", aud))
        self.assertAadError(status, body, 401, "invalid_client", 700027)

        status, _, body = ask(cert.assertion("cert-app", "https://login.microsoftonline.com/"
                                             "x/oauth2/v2.0/token"))
        self.assertAadError(status, body, 401, "invalid_client", 700023)
        past = int(time.time()) - 3600
        status, _, body = ask(cert.assertion("cert-app", aud, nbf=past, exp=past + 600))
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"], "invalid_client")
        self.assertIn("valid time range", body["error_description"])
        self.assertEqual(self.fake.token_count(ok=True), 2)

    def test_password_and_refresh_grants(self):
        self.fake.add_user(TENANT, "mfa@contoso.example", password="pw", mfa=True)
        form = {"grant_type": "password", "client_id": CLIENT, "username": MAILBOX,
                "password": "correct horse",
                "scope": "https://graph.microsoft.com/Mail.Send offline_access"}
        status, _, body = self.token_request(form)
        self.assertEqual(status, 200, body)
        self.assertIn("refresh_token", body)
        self.assertIn("https://graph.microsoft.com/Mail.Send", body["scope"])
        first_rt = body["refresh_token"]

        status, _, body = self.token_request(dict(form, password="wrong"))
        self.assertAadError(status, body, 400, "invalid_grant", 50126)
        status, _, body = self.token_request(dict(form, username="mfa@contoso.example",
                                                  password="pw"))
        self.assertAadError(status, body, 400, "invalid_grant", 50076)

        refresh = {"grant_type": "refresh_token", "client_id": CLIENT,
                   "refresh_token": first_rt}
        status, _, body = self.token_request(refresh)
        self.assertEqual(status, 200, body)
        self.assertNotEqual(body["refresh_token"], first_rt)     # rotated
        # The delegated token works on the user's own mailbox.
        status, _, _ = self.send_mime(body["access_token"], mime_message())
        self.assertEqual(status, 202)
        self.assertEqual(self.fake.sent[0].user, MAILBOX)

        self.fake.expire_refresh_tokens()
        status, _, body = self.token_request(dict(refresh, refresh_token=body["refresh_token"]))
        self.assertAadError(status, body, 400, "invalid_grant", 70008)
        self.assertEqual(self.fake.token_requests["refresh_token"], 2)
        self.assertEqual(self.fake.token_requests["password"], 3)

    def test_device_code_flow(self):
        status, _, raw = self.http("POST", "/%s/oauth2/v2.0/devicecode" % TENANT,
                                   urllib.parse.urlencode({
                                       "client_id": CLIENT,
                                       "scope": "https://graph.microsoft.com/Mail.Send "
                                                "offline_access"}).encode(),
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, raw)
        dc = json.loads(raw)
        self.assertEqual(set(dc), {"user_code", "device_code", "verification_uri", "expires_in",
                                   "interval", "message"})
        poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "client_id": CLIENT, "device_code": dc["device_code"]}
        status, _, body = self.token_request(poll)
        self.assertAadError(status, body, 400, "authorization_pending", 70016)
        self.fake.approve_device_code(MAILBOX, dc["user_code"])
        status, _, body = self.token_request(poll)
        self.assertEqual(status, 200, body)
        self.assertIn("refresh_token", body)
        # A delegated token may use /me; an app-only one may not.
        status, _, _ = self.graph("POST", "/v1.0/me/sendMail", body["access_token"],
                                  b64_76(mime_message()), "text/plain")
        self.assertEqual(status, 202)
        status, _, err = self.graph("POST", "/v1.0/me/sendMail", self.app_token(),
                                    b64_76(mime_message()), "text/plain")
        self.assertGraphError(status, err, 400, "BadRequest")

    def test_forced_token_error(self):
        self.fake.set_token_error(50033, n=1)
        status, _, body = self.token_request({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": GRAPH_SCOPE})
        self.assertAadError(status, body, 503, "temporarily_unavailable", 50033)
        self.app_token()   # one only


class SendMailTest(FakeMicrosoftTestBase):
    def test_mime_accepted_and_recipients_recorded(self):
        token = self.app_token()
        mime = mime_message("Alice <Alice@Example.com>, bob@example.com",
                            extra=b"Cc: carol@example.com\r\nBcc: Dave@Example.net\r\n")
        status, h, body = self.send_mime(token, mime)
        self.assertEqual(status, 202)
        self.assertIsNone(body)
        self.assertEqual(h["Content-Length"], "0")
        [msg] = self.fake.wait_sent(1, timeout=2)
        self.assertEqual(msg.kind, "mime")
        self.assertEqual(msg.mailbox, MAILBOX)
        self.assertEqual(msg.mime, mime)
        self.assertEqual(msg.to, ["alice@example.com", "bob@example.com"])
        self.assertEqual(msg.cc, ["carol@example.com"])
        self.assertEqual(msg.bcc, ["dave@example.net"])
        self.assertEqual(msg.recipients, ["alice@example.com", "bob@example.com",
                                          "carol@example.com", "dave@example.net"])
        self.assertTrue(msg.save_to_sent_items)
        self.assertEqual(msg.subject, "test")
        entry = self.fake.requests_to("/sendMail")[0]
        self.assertEqual((entry.method, entry.status, entry.authorization), ("POST", 202, True))

    def test_json_message(self):
        token = self.app_token()
        message = {"message": {
            "subject": "json", "body": {"contentType": "Text", "content": "hi"},
            "toRecipients": [{"emailAddress": {"address": "Erin@Example.com"}}],
            "internetMessageHeaders": [{"name": "X-Mailbridge-Id", "value": "q1"}]},
            "saveToSentItems": False}
        status, _, _ = self.graph("POST", "/v1.0/users/%s/sendMail" % MAILBOX, token,
                                  json.dumps(message).encode(), "application/json")
        self.assertEqual(status, 202)
        [msg] = self.fake.sent
        self.assertEqual((msg.kind, msg.to, msg.save_to_sent_items),
                         ("json", ["erin@example.com"], False))
        message["message"]["internetMessageHeaders"][0]["name"] = "Received"
        status, _, body = self.graph("POST", "/v1.0/users/%s/sendMail" % MAILBOX, token,
                                     json.dumps(message).encode(), "application/json")
        self.assertGraphError(status, body, 400, "InvalidInternetMessageHeader")

    def test_bad_base64(self):
        token = self.app_token()
        status, _, body = self.graph("POST", "/v1.0/users/%s/sendMail" % MAILBOX, token,
                                     b"not base64 at all!!", "text/plain")
        self.assertGraphError(status, body, 400, "ErrorMimeContentInvalidBase64String")
        self.assertEqual(self.fake.sent, [])

    def test_request_over_4mb(self):
        token = self.app_token()
        big = mime_message(body=b"x" * (3 * 1024 * 1024 + 200))
        self.assertGreater(len(b64_76(big)), 4 * 1024 * 1024)
        status, _, body = self.send_mime(token, big)
        self.assertGraphError(status, body, 400, "BadRequest")
        self.assertEqual(body["error"]["message"], "The maximum request length supported is 4MB.")
        self.fake.set_max_message_size(1000)
        status, _, body = self.send_mime(token, mime_message(body=b"y" * 2000))
        self.assertGraphError(status, body, 413, "ErrorMessageSizeExceeded")
        self.assertEqual(self.fake.sent, [])

    def test_authentication_and_authorization(self):
        status, h, body = self.send_mime(None, mime_message())
        self.assertGraphError(status, body, 401, "InvalidAuthenticationToken")
        self.assertIn("Bearer", h["WWW-Authenticate"])
        status, h, body = self.graph("POST", "/v1.0/users/%s/sendMail" % MAILBOX, "junk",
                                     b64_76(mime_message()), "text/plain",
                                     headers={"client-request-id": "c0ffee00-1111-4222-8333-"
                                                                   "944455556666"})
        self.assertGraphError(status, body, 401, "InvalidAuthenticationToken")
        self.assertEqual(body["error"]["innerError"]["client-request-id"],
                         "c0ffee00-1111-4222-8333-944455556666")
        self.assertEqual(h["client-request-id"], "c0ffee00-1111-4222-8333-944455556666")

        token = self.app_token()
        self.fake.expire_tokens()
        status, _, body = self.send_mime(token, mime_message())
        self.assertGraphError(status, body, 401, "InvalidAuthenticationToken")
        self.assertIn("expired", body["error"]["message"])

        self.fake.add_app(TENANT, "no-consent", secret="s", roles=())
        status, _, body = self.send_mime(self.app_token("no-consent", "s"), mime_message())
        self.assertGraphError(status, body, 403, "ErrorAccessDenied")
        self.assertEqual(body["error"]["message"],
                         "Access is denied. Check credentials and try again.")
        self.assertEqual(self.fake.sent, [])

    def test_mailbox_errors(self):
        token = self.app_token()
        self.fake.add_user(TENANT, "onprem@contoso.example", mailbox=False)
        self.fake.add_user(TENANT, "shared@contoso.example")
        self.fake.deny_send_as("shared@contoso.example")
        for mailbox, st, code in (("ghost@contoso.example", 404, "ErrorInvalidUser"),
                                  ("onprem@contoso.example", 404, "MailboxNotEnabledForRESTAPI"),
                                  ("shared@contoso.example", 403, "ErrorSendAsDenied")):
            with self.subTest(mailbox=mailbox):
                status, _, body = self.send_mime(token, mime_message(), mailbox)
                self.assertGraphError(status, body, st, code)
        status, _, body = self.send_mime(token, b"From: a@contoso.example\r\nSubject: x\r\n\r\n")
        self.assertGraphError(status, body, 400, "ErrorInvalidRecipients")


class LargeMessageTest(FakeMicrosoftTestBase):
    def test_upload_session_flow(self):
        token = self.app_token()
        base = "/v1.0/users/%s/messages" % MAILBOX
        draft_mime = mime_message("alice@example.com", extra=b"Bcc: bcc@example.org\r\n")
        status, _, draft = self.graph("POST", base, token, b64_76(draft_mime), "text/plain")
        self.assertEqual(status, 201, draft)
        mid = draft["id"]
        self.assertTrue(draft["isDraft"])

        # A small inline attachment in one POST.
        small = os.urandom(1000)
        status, _, body = self.graph("POST", "%s/%s/attachments" % (base, mid), token, json.dumps({
            "@odata.type": "#microsoft.graph.fileAttachment", "name": "logo.png",
            "contentType": "image/png", "contentBytes": base64.b64encode(small).decode(),
            "isInline": True, "contentId": "logo"}).encode(), "application/json")
        self.assertEqual(status, 201, body)

        # Upload sessions are for 3 MB and more.
        status, _, body = self.graph(
            "POST", "%s/%s/attachments/createUploadSession" % (base, mid), token,
            json.dumps({"AttachmentItem": {"attachmentType": "file", "name": "s.bin",
                                           "size": 1024}}).encode(), "application/json")
        self.assertGraphError(status, body, 400,
                              "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")

        data = os.urandom(5 * 1024 * 1024)
        status, _, session = self.graph(
            "POST", "%s/%s/attachments/createUploadSession" % (base, mid), token,
            json.dumps({"AttachmentItem": {"attachmentType": "file", "name": "scan.pdf",
                                           "size": len(data), "contentType": "application/pdf",
                                           "isInline": False}}).encode(), "application/json")
        self.assertEqual(status, 201, session)
        self.assertEqual(session["nextExpectedRanges"], ["0-"])
        self.assertIn("expirationDateTime", session)
        url = session["uploadUrl"]
        self.assertTrue(url.startswith(self.fake.base_url + "/api/v2.0/Users('"), url)
        self.assertIn("?authtoken=", url)

        chunk = 4 * 1024 * 1024

        def put(start, end, headers=None):
            hdrs = {"Content-Type": "application/octet-stream",
                    "Content-Range": "bytes %d-%d/%d" % (start, end - 1, len(data))}
            hdrs.update(headers or {})
            return self.http("PUT", url, data[start:end], hdrs)

        status, _, raw = put(0, chunk, {"Authorization": "Bearer " + token})
        self.assertEqual(status, 401, raw)
        status, _, raw = put(chunk, len(data))               # out of order
        self.assertEqual(status, 416, raw)
        self.assertIn("error", json.loads(raw))

        status, _, raw = put(0, chunk)
        self.assertEqual(status, 200, raw)
        progress = json.loads(raw)
        self.assertEqual(progress["nextExpectedRanges"], [str(chunk)])
        self.assertIn("ExpirationDateTime", progress)
        status, h, raw = put(chunk, len(data))
        self.assertEqual(status, 201)
        self.assertEqual(raw, b"")
        self.assertIn("/Attachments('", h["Location"])

        self.assertEqual(self.fake.sent, [])
        status, _, body = self.graph("POST", "%s/%s/send" % (base, mid), token, b"")
        self.assertEqual(status, 202, body)
        [msg] = self.fake.wait_sent(1, timeout=2)
        self.assertEqual(msg.kind, "draft")
        self.assertEqual(msg.recipients, ["alice@example.com", "bcc@example.org"])
        self.assertEqual(msg.mime, draft_mime)
        [inline, big] = msg.attachments
        self.assertEqual((inline.name, inline.is_inline, inline.content_id, inline.data),
                         ("logo.png", True, "logo", small))
        self.assertEqual((big.name, big.content_type, big.size), ("scan.pdf", "application/pdf",
                                                                   len(data)))
        self.assertEqual(big.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(big.data, data)
        self.assertIn(b"scan.pdf", msg.assembled()[:200000] + msg.assembled()[-200000:])
        puts = self.fake.requests_to("/AttachmentSessions(", "PUT")
        self.assertEqual([e.status for e in puts], [401, 416, 200, 201])
        self.assertEqual([e.authorization for e in puts], [True, False, False, False])

    def test_json_draft_and_send_as(self):
        token = self.app_token()
        base = "/v1.0/users/%s/messages" % MAILBOX
        status, _, draft = self.graph("POST", base, token, json.dumps({
            "subject": "report", "body": {"contentType": "HTML", "content": "<b>hi</b>"},
            "from": {"emailAddress": {"address": "printer@example.com"}},
            "toRecipients": [{"emailAddress": {"address": "ops@example.com"}}]}).encode(),
            "application/json")
        self.assertEqual(status, 201, draft)
        self.fake.set_enforce_send_as(True)
        status, _, body = self.graph("POST", "%s/%s/send" % (base, draft["id"]), token, b"")
        self.assertGraphError(status, body, 403, "ErrorSendAsDenied")
        self.fake.grant_send_as(MAILBOX, "printer@example.com")
        status, _, body = self.graph("POST", "%s/%s/send" % (base, draft["id"]), token, b"")
        self.assertEqual(status, 202, body)
        [msg] = self.fake.sent
        self.assertEqual((msg.kind, msg.to, msg.subject), ("draft", ["ops@example.com"],
                                                           "report"))
        self.assertIn(b"To: ops@example.com", msg.assembled())
        status, _, body = self.graph("POST", "%s/%s/send" % (base, draft["id"]), token, b"")
        self.assertGraphError(status, body, 404, "ErrorItemNotFound")   # sent drafts are gone

    def test_delete_after_submit_keeps_no_sent_copy(self):
        token = self.app_token()
        base = "/v1.0/users/%s/messages" % MAILBOX
        status, _, draft = self.graph("POST", base, token, b64_76(mime_message()), "text/plain")
        self.assertEqual(status, 201, draft)
        status, _, body = self.graph("PATCH", "%s/%s" % (base, draft["id"]), token,
                                     b"{\"singleValueExtendedProperties\": 7}",
                                     "application/json")
        self.assertGraphError(status, body, 400, "ErrorInvalidExtendedPropertyValue")
        status, _, body = self.graph("PATCH", "%s/%s" % (base, draft["id"]), token, json.dumps({
            "singleValueExtendedProperties": [{"id": "Boolean 0x0E01", "value": "true"}]}).encode(),
            "application/json")
        self.assertEqual(status, 200, body)
        status, _, body = self.graph("POST", "%s/%s/send" % (base, draft["id"]), token, b"")
        self.assertEqual(status, 202, body)
        [msg] = self.fake.wait_sent(1, timeout=2)
        self.assertFalse(msg.save_to_sent_items)

    def test_draft_needs_mail_readwrite(self):
        self.fake.add_app(TENANT, "send-only", secret="s", roles=("Mail.Send",))
        status, _, body = self.graph("POST", "/v1.0/users/%s/messages" % MAILBOX,
                                     self.app_token("send-only", "s"),
                                     b64_76(mime_message()), "text/plain")
        self.assertGraphError(status, body, 403, "ErrorAccessDenied")


class LimitsAndFaultsTest(FakeMicrosoftTestBase):
    def test_concurrency_limit(self):
        token = self.app_token()
        self.fake.delay(1.5)

        def one():
            status, h, body = self.send_mime(token, mime_message())
            return status, h.get("Retry-After"), body

        results = https_fake_client.in_threads(6, one)
        statuses = sorted(r[0] for r in results)
        # Four at a time; a request that started late (a slow handshake on a
        # busy machine) may find a slot free again.
        self.assertEqual(len(statuses), 6, results)
        self.assertEqual(statuses.count(202) + statuses.count(429), 6, results)
        self.assertGreaterEqual(statuses.count(202), 4, results)
        throttled = [r for r in results if r[0] == 429]
        self.assertGreaterEqual(len(throttled), 1, results)
        self.assertEqual(len(self.fake.sent), statuses.count(202))
        for _, retry_after, body in throttled:
            self.assertEqual(retry_after, "1")
            self.assertEqual(body["error"]["code"], "ApplicationThrottled")
            self.assertIn("MailboxConcurrency limit", body["error"]["message"])

    def test_rate_limit(self):
        token = self.app_token()
        self.fake.set_rate_limit(2)
        self.assertEqual(self.send_mime(token, mime_message())[0], 202)
        self.assertEqual(self.send_mime(token, mime_message())[0], 202)
        status, h, body = self.send_mime(token, mime_message())
        self.assertGraphError(status, body, 429, "ApplicationThrottled")
        self.assertGreaterEqual(int(h["Retry-After"]), 1)

    def test_fail_next_and_reset(self):
        token = self.app_token()
        self.fake.fail_next(2, 503, retry_after=7)
        for _ in range(2):
            status, h, body = self.send_mime(token, mime_message())
            self.assertGraphError(status, body, 503, "ServiceUnavailable")
            self.assertEqual(h["Retry-After"], "7")
        self.fake.fail_next(1, 429, code="ApplicationThrottled",
                            message="Application is over its IncomingBytes limit.",
                            path_contains="/sendMail")
        status, _, body = self.send_mime(token, mime_message())
        self.assertGraphError(status, body, 429, "ApplicationThrottled")
        self.assertEqual(self.send_mime(token, mime_message())[0], 202)

        self.fake.reset_next(1)
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.send_mime(token, mime_message())
        self.assertEqual(len(self.fake.sent), 1)
        self.fake.reset_next(1, after_processing=True)
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.send_mime(token, mime_message())
        self.assertEqual(len(self.fake.sent), 2)     # accepted, answer lost
        self.assertEqual(self.send_mime(token, mime_message())[0], 202)

        # Token endpoint faults only when asked for.
        self.fake.fail_next(1, 500, endpoint="token")
        status, _, body = self.token_request({
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": GRAPH_SCOPE})
        self.assertEqual(status, 500)
        self.assertEqual(body["error"], "temporarily_unavailable")
        self.app_token()


if __name__ == "__main__":
    unittest.main()
