"""The fake Google token endpoint + Gmail API (tests/fakes/fake_google.py)
answers as the real services do, so that the relay's end-to-end tests against
it mean something. Plain urllib over TLS, trusting the test CA; JWTs signed
here with the openssl command line tool (test_ca.sign), independently of the
fake's own crypto; no relay."""

import base64
import calendar
import json
import re
import stat
import sys
import tempfile
import time
import unittest
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

import fake_google  # noqa: E402
import https_fake_client  # noqa: E402
from fake_google import (GMAIL_SEND, MAX_MESSAGE_SIZE, FakeGoogle,  # noqa: E402
                         make_assertion)
from test_ca import b64url, b64url_decode, sign, temp_file  # noqa: E402

SA = "relay@mailbridge-test.iam.gserviceaccount.com"
USER = "scanner@example.com"
OTHER = "alice@example.com"
DOMAIN = "example.com"
MAIL_GOOGLE = "https://mail.google.com/"
READONLY = "https://www.googleapis.com/auth/gmail.readonly"
SHORT_LIVED = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
               "reasonable timeframe. Check your iat and exp values in the JWT claim.")
UNAUTHORIZED = ("Client is unauthorized to retrieve access tokens using this method, or "
                "client not authorized for any of the scopes requested.")
MB = 1024 * 1024


def message(to="bob@example.net", extra=b"", body=b"Hello.\r\n", frm=USER):
    return https_fake_client.mime_message("Scanner <%s>" % frm, to, "<t1@example.com>",
                                          extra, body)


def big_message(size, to="bob@example.net"):
    head = message(to, body=b"")
    line = b"x" * 998 + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size]


class FakeGoogleTestBase(https_fake_client.HttpsFakeTestCase):
    fake_class = FakeGoogle
    http_timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.TemporaryDirectory(prefix="mb-test-fake-google-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.key = self.fake.add_service_account(SA)
        self.fake.add_user(USER)
        self.fake.add_user(OTHER)
        self.fake.grant_delegation(self.key["client_id"], [GMAIL_SEND], domain=DOMAIN)

    # ---- helpers -----------------------------------------------------------

    def jwt(self, key=None, sub=USER, scope=GMAIL_SEND, aud=None, iat=None, lifetime=3600,
            exp=None, header=None, claims=None):
        """An RS256 assertion as a client library builds it from the key
        file, signed here with openssl (test_ca.sign), not with the fake's
        crypto."""
        key = key or self.key
        with temp_file(key["private_key"]) as key_file:
            return make_assertion(key, scope=scope, sub=sub, aud=aud, iat=iat, lifetime=lifetime,
                                  exp=exp, header=header, claims=claims,
                                  signer=lambda data: sign(key_file, data, "RS256"))

    def token_request(self, form):
        return self.post_form("/token", form)

    def ask(self, assertion):
        return self.token_request({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "assertion": assertion})

    def token(self, **kw):
        status, _, body = self.ask(self.jwt(**kw))
        self.assertEqual(status, 200, body)
        return body["access_token"]

    gmail = https_fake_client.HttpsFakeTestCase.call

    def send_raw(self, token, raw, user="me", encode=True):
        value = b64url(raw) if encode else raw
        return self.gmail("POST", "/gmail/v1/users/%s/messages/send" % user, token,
                          json.dumps({"raw": value}).encode(), "application/json")

    def upload(self, token, raw, user="me", ctype="message/rfc822", upload_type="media"):
        return self.gmail("POST", "/upload/gmail/v1/users/%s/messages/send?uploadType=%s"
                          % (user, upload_type), token, raw, ctype)

    def assertTokenError(self, status, body, want_status, error, description):
        self.assertEqual(status, want_status, body)
        self.assertEqual(body, {"error": error, "error_description": description})

    def assertGoogleError(self, status, body, want_status, reason, status_name, message=None,
                          domain="global"):
        self.assertEqual(status, want_status, body)
        self.assertEqual(set(body), {"error"})
        err = body["error"]
        self.assertEqual(set(err), {"code", "message", "errors", "status"}, err)
        self.assertEqual(err["code"], want_status)
        self.assertEqual(err["status"], status_name, err)
        [item] = err["errors"]
        self.assertEqual((item["reason"], item["domain"]), (reason, domain), err)
        self.assertIsInstance(item["message"], str)
        if message is not None:
            self.assertEqual(err["message"], message)
        return err


class TokenEndpointTest(FakeGoogleTestBase):
    def test_key_file_and_good_token(self):
        key = self.key
        self.assertEqual(key["type"], "service_account")
        self.assertEqual(key["client_email"], SA)
        self.assertEqual(key["token_uri"], self.fake.token_uri)
        self.assertEqual(key["project_id"], "mailbridge-test")
        self.assertRegex(key["client_id"], r"^\d{21}$")
        self.assertRegex(key["private_key_id"], r"^[0-9a-f]{40}$")
        self.assertTrue(key["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n"))
        for field in ("auth_uri", "auth_provider_x509_cert_url", "client_x509_cert_url",
                      "universe_domain"):
            self.assertIn(field, key)
        path = self.fake.write_key_file(Path(self.tmp.name) / "sa.json")
        self.assertEqual(json.loads(path.read_text()), key)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)

        assertion = self.jwt()
        status, h, body = self.ask(assertion)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"access_token", "expires_in", "token_type"})
        self.assertEqual((body["expires_in"], body["token_type"]), (3599, "Bearer"))
        self.assertTrue(h["Content-Type"].startswith("application/json"))
        self.assertIn("no-store", h["Cache-Control"])
        [tok] = self.fake.tokens
        self.assertEqual((tok.user, tok.service_account, tok.client_id, tok.scopes),
                         (USER, SA, key["client_id"], {GMAIL_SEND}))
        self.assertAlmostEqual(tok.expires_at - tok.issued_at, 3599, delta=1)
        self.assertEqual(self.fake.token_count(USER, ok=True), 1)
        self.assertEqual(self.fake.token_count(service_account=SA), 1)
        entry = self.fake.requests[-1]
        self.assertEqual((entry.endpoint, entry.status, entry.user, entry.service_account),
                         ("token", 200, USER, SA))
        text = repr(self.fake.requests) + repr(self.fake.token_events)
        for secret in (assertion, body["access_token"], assertion.split(".")[2]):
            self.assertNotIn(secret, text)

        # The fake's own helper builds the same kind of assertion.
        status, _, body = self.ask(make_assertion(key, sub=USER))
        self.assertEqual(status, 200, body)

    def test_bad_signature(self):
        good = self.jwt()
        h, p, s = good.split(".")
        claims = json.loads(b64url_decode(p))
        claims["sub"] = OTHER
        tampered = h + "." + b64url(json.dumps(claims).encode()) + "." + s
        other_key = self.fake.add_service_account("other@mailbridge-test.iam."
                                                  "gserviceaccount.com")
        # Signed with another account's key, presented as ours.
        forged = self.jwt(key=dict(other_key, client_email=SA,
                                   private_key_id=self.key["private_key_id"]))
        unknown_kid = self.jwt(header={"kid": "0" * 40})
        hs256 = self.jwt(header={"alg": "HS256"})
        for name, jwt in (("tampered", tampered), ("forged", forged),
                          ("unknown kid", unknown_kid), ("alg", hs256)):
            with self.subTest(name):
                status, _, body = self.ask(jwt)
                self.assertTokenError(status, body, 400, "invalid_grant",
                                      "Invalid JWT Signature.")
        self.fake.delete_key(SA, self.key["private_key_id"])
        status, _, body = self.ask(good)
        self.assertTokenError(status, body, 400, "invalid_grant", "Invalid JWT Signature.")
        self.assertEqual(self.fake.token_count(ok=True), 0)
        self.assertEqual(self.fake.token_count(ok=False), 5)

    def test_key_rotation_without_kid(self):
        new = self.fake.add_key(SA)
        key2 = self.fake.key_file(SA, new.key_id)
        self.assertEqual(self.ask(self.jwt(key=key2))[0], 200)
        self.assertEqual(self.ask(self.jwt(header={"kid": None}))[0], 200)   # any live key

    def test_wrong_audience(self):
        for aud in ("https://oauth2.googleapis.com/token", self.fake.base_url + "/oauth2/token"):
            with self.subTest(aud=aud):
                status, _, body = self.ask(self.jwt(aud=aud))
                self.assertTokenError(status, body, 400, "invalid_grant",
                                      "Invalid JWT: Failed audience check.")

    def test_lifetime_and_timeframe(self):
        now = int(time.time())
        cases = {"exp too long": dict(lifetime=3601),
                 "issued in the future": dict(iat=now + 3600),
                 "expired": dict(iat=now - 7200, lifetime=3600),
                 "exp before iat": dict(exp=now - 10),
                 "no exp": dict(claims={"exp": None})}
        for name, kw in cases.items():
            with self.subTest(name):
                status, _, body = self.ask(self.jwt(**kw))
                self.assertTokenError(status, body, 400, "invalid_grant", SHORT_LIVED)
        # A minute of skew either way is fine; an hour exactly is fine.
        self.assertEqual(self.ask(self.jwt(iat=now + 60))[0], 200)
        self.assertEqual(self.ask(self.jwt(iat=now - 60, lifetime=3600))[0], 200)

    def test_unknown_user(self):
        for sub in ("ghost@example.com", "someone@unknown.example"):
            with self.subTest(sub=sub):
                status, _, body = self.ask(self.jwt(sub=sub))
                self.assertTokenError(status, body, 400, "invalid_grant",
                                      "Invalid email or User ID")

    def test_no_delegation(self):
        self.fake.add_user("eve@other.example")       # a domain without a grant
        status, _, body = self.ask(self.jwt(sub="eve@other.example"))
        self.assertTokenError(status, body, 401, "unauthorized_client", UNAUTHORIZED)
        self.fake.grant_delegation(SA, [GMAIL_SEND], domain="other.example")
        self.assertEqual(self.ask(self.jwt(sub="eve@other.example"))[0], 200)
        self.fake.revoke_delegation(self.key["client_id"], domain=DOMAIN)
        status, _, body = self.ask(self.jwt())
        self.assertTokenError(status, body, 401, "unauthorized_client", UNAUTHORIZED)
        self.assertEqual(self.fake.requests[-1].error, "unauthorized_client")

    def test_scope_not_granted(self):
        for scope in (MAIL_GOOGLE, GMAIL_SEND + " " + MAIL_GOOGLE):
            with self.subTest(scope=scope):
                status, _, body = self.ask(self.jwt(scope=scope))
                self.assertTokenError(status, body, 401, "unauthorized_client", UNAUTHORIZED)
        self.fake.grant_delegation(self.key["client_id"], [MAIL_GOOGLE])    # every domain
        self.assertEqual(self.ask(self.jwt(scope=GMAIL_SEND + " " + MAIL_GOOGLE))[0], 200)
        self.fake.revoke_delegation(self.key["client_id"], [MAIL_GOOGLE])
        self.assertEqual(self.ask(self.jwt(scope=MAIL_GOOGLE))[0], 401)

    def test_account_and_request_errors(self):
        status, _, body = self.ask(self.jwt(key=dict(self.key, client_email="ghost@x.iam."
                                                                           "gserviceaccount.com")))
        self.assertTokenError(status, body, 400, "invalid_grant",
                              "Invalid grant: account not found")
        self.fake.disable_service_account(SA)
        status, _, body = self.ask(self.jwt())
        self.assertTokenError(status, body, 400, "invalid_grant",
                              "Invalid grant: account not found")
        self.fake.disable_service_account(SA, False)

        status, _, body = self.ask(self.jwt(scope=None, claims={"scope": None}))
        self.assertEqual((status, body["error"]), (400, "invalid_scope"), body)
        status, _, body = self.token_request({"grant_type": "client_credentials"})
        self.assertEqual((status, body["error"]), (400, "unsupported_grant_type"), body)
        status, _, body = self.token_request({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"})
        self.assertEqual((status, body["error"]), (400, "invalid_request"), body)
        status, _, body = self.ask("not.a-jwt")
        self.assertEqual((status, body["error"]), (400, "invalid_grant"), body)

    def test_service_account_itself_and_forced_errors(self):
        # Without sub the token is the service account's own: no delegation needed.
        status, _, body = self.ask(self.jwt(sub=None, scope=MAIL_GOOGLE))
        self.assertEqual(status, 200, body)
        self.assertIsNone(self.fake.tokens[-1].user)

        self.fake.set_token_error("internal_failure", "Backend Error", status=500, n=1)
        status, _, body = self.ask(self.jwt())
        self.assertTokenError(status, body, 500, "internal_failure", "Backend Error")
        self.fake.fail_next(1, 503, endpoint="token", retry_after=3)
        status, h, body = self.ask(self.jwt())
        self.assertEqual((status, body["error"], h["Retry-After"]),
                         (503, "internal_failure", "3"))
        self.token()


class GmailSendTest(FakeGoogleTestBase):
    def test_send_raw_small(self):
        token = self.token()
        raw = message()
        status, h, body = self.send_raw(token, raw)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"id", "threadId", "labelIds"})
        self.assertEqual(body["labelIds"], ["SENT"])
        self.assertRegex(body["id"], r"^[0-9a-f]{16}$")
        self.assertEqual(body["threadId"], body["id"])
        self.assertTrue(h["Content-Type"].startswith("application/json"))
        [msg] = self.fake.wait_sent(1, timeout=2)
        self.assertEqual((msg.user, msg.raw, msg.via, msg.id), (USER, raw, "raw", body["id"]))
        self.assertEqual((msg.to, msg.cc, msg.bcc), (["bob@example.net"], [], []))
        self.assertEqual((msg.service_account, msg.subject, msg.sent_from), (SA, "test", USER))
        self.assertTrue(msg.request_id)

        # The address itself works as userId, standard base64 with padding too.
        padded = base64.b64encode(raw + b"!").decode()
        status, _, body = self.send_raw(token, padded, user=USER, encode=False)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.fake.sent[1].raw, raw + b"!")
        entry = self.fake.requests_to("/messages/send")[-1]
        self.assertEqual((entry.endpoint, entry.status, entry.user, entry.authorization),
                         ("gmail", 200, USER, True))
        self.assertNotIn(token, repr(self.fake.requests))

    def test_recipients_from_headers_including_bcc(self):
        token = self.token()
        raw = message("Bob <Bob@Example.NET>, carol@example.org",
                      extra=b"Cc: \"Dave, D.\" <dave@example.org>, carol@example.org\r\n"
                            b"Bcc: hidden1@example.com,\r\n Hidden Two <HIDDEN2@example.com>\r\n")
        status, _, body = self.send_raw(token, raw)
        self.assertEqual(status, 200, body)
        [msg] = self.fake.sent
        self.assertEqual(msg.to, ["bob@example.net", "carol@example.org"])
        self.assertEqual(msg.cc, ["dave@example.org", "carol@example.org"])
        self.assertEqual(msg.bcc, ["hidden1@example.com", "hidden2@example.com"])
        self.assertEqual(msg.recipients, ["bob@example.net", "carol@example.org",
                                          "dave@example.org", "hidden1@example.com",
                                          "hidden2@example.com"])
        # Only Bcc (with an empty group in To) is enough.
        raw = (b"From: " + USER.encode() + b"\r\nTo: undisclosed-recipients:;\r\n"
               b"Bcc: only@example.com\r\nSubject: b\r\n\r\nx\r\n")
        status, _, body = self.send_raw(token, raw)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.fake.sent[1].recipients, ["only@example.com"])

    def test_media_upload_20mb(self):
        token = self.token()
        raw = big_message(20 * MB, to="big@example.net")
        status, h, body = self.upload(token, raw)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["labelIds"], ["SENT"])
        [msg] = self.fake.sent
        self.assertEqual((msg.via, msg.size, msg.to), ("media", 20 * MB, ["big@example.net"]))
        self.assertEqual(msg.raw, raw)
        entry = self.fake.requests[-1]
        self.assertEqual((entry.endpoint, entry.upload_type, entry.body_length),
                         ("upload", "media", 20 * MB))

    def test_over_35mb_refused(self):
        token = self.token()
        status, _, body = self.upload(token, big_message(MAX_MESSAGE_SIZE + 1))
        err = self.assertGoogleError(status, body, 413, "uploadTooLarge", "INVALID_ARGUMENT")
        self.assertIn(str(MAX_MESSAGE_SIZE), err["message"])
        # Exactly 35 MB is fine.
        self.assertEqual(self.upload(token, big_message(MAX_MESSAGE_SIZE))[0], 200)
        self.assertEqual(len(self.fake.sent), 1)
        self.fake.clear_records()

        # The JSON form: a decoded message over the limit, or a request over its limit.
        self.fake.set_max_message_size(10000)
        status, _, body = self.send_raw(token, big_message(10001))
        self.assertGoogleError(status, body, 413, "uploadTooLarge", "INVALID_ARGUMENT")
        self.fake.set_max_message_size(MAX_MESSAGE_SIZE)
        self.fake.set_raw_request_limit(1024 * 1024)
        status, _, body = self.send_raw(token, big_message(800 * 1024))
        self.assertGoogleError(status, body, 400, "badRequest", "INVALID_ARGUMENT",
                               "Request payload size exceeds the limit: 1048576 bytes.")
        self.assertEqual(self.fake.sent, [])

    def test_multipart_upload(self):
        token = self.token()
        raw = message("multi@example.net")
        body = (b"--foo_bar_baz\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                b"{\"threadId\": \"18c0ffee00000001\"}\r\n"
                b"--foo_bar_baz\r\nContent-Type: message/rfc822\r\n\r\n" + raw +
                b"\r\n--foo_bar_baz--\r\n")
        status, _, resp = self.upload(token, body, ctype='multipart/related; '
                                                         'boundary="foo_bar_baz"',
                                      upload_type="multipart")
        self.assertEqual(status, 200, resp)
        self.assertEqual(resp["threadId"], "18c0ffee00000001")
        [msg] = self.fake.sent
        self.assertEqual((msg.via, msg.raw, msg.to), ("multipart", raw, ["multi@example.net"]))
        bad = body.replace(b"message/rfc822", b"text/plain")
        status, _, resp = self.upload(token, bad, ctype="multipart/related; boundary=foo_bar_baz",
                                      upload_type="multipart")
        self.assertGoogleError(status, resp, 400, "badRequest", "INVALID_ARGUMENT")

    def test_resumable_upload(self):
        token = self.token()
        raw = big_message(600 * 1024, to="resume@example.net")
        status, h, _ = self.gmail("POST", "/upload/gmail/v1/users/me/messages/send"
                                  "?uploadType=resumable", token, b"{}",
                                  "application/json; charset=UTF-8",
                                  {"X-Upload-Content-Type": "message/rfc822",
                                   "X-Upload-Content-Length": str(len(raw))})
        self.assertEqual(status, 200)
        url = h["Location"]
        self.assertIn("upload_id=", url)
        chunk = 256 * 1024

        def put(start, end, total=len(raw)):
            hdrs = {"Content-Type": "message/rfc822"}
            if start == end:
                hdrs["Content-Range"] = "bytes */%d" % total
            else:
                hdrs["Content-Range"] = "bytes %d-%d/%d" % (start, end - 1, total)
            return self.http("PUT", url, raw[start:end], hdrs)

        status, h, _ = put(0, chunk)
        self.assertEqual((status, h["Range"]), (308, "bytes=0-%d" % (chunk - 1)))
        status, h, _ = put(0, 0)                                   # status query
        self.assertEqual((status, h["Range"]), (308, "bytes=0-%d" % (chunk - 1)))
        status, _, _ = put(2 * chunk, len(raw))                    # a gap
        self.assertEqual(status, 400)
        self.assertEqual(put(chunk, 2 * chunk)[0], 308)
        self.assertEqual(self.fake.sent, [])
        status, _, body = put(2 * chunk, len(raw))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["labelIds"], ["SENT"])
        [msg] = self.fake.sent
        self.assertEqual((msg.via, msg.raw, msg.to), ("resumable", raw, ["resume@example.net"]))
        self.assertEqual(put(0, 0)[0], 404)                        # the session is gone

        status, _, body = self.gmail("POST", "/upload/gmail/v1/users/me/messages/send"
                                     "?uploadType=resumable", token, b"", None,
                                     {"X-Upload-Content-Type": "message/rfc822",
                                      "X-Upload-Content-Length": str(MAX_MESSAGE_SIZE + 1)})
        self.assertGoogleError(status, body, 413, "uploadTooLarge", "INVALID_ARGUMENT")

    def test_message_errors(self):
        token = self.token()
        cases = [
            ("no recipients", lambda: self.send_raw(
                token, b"From: " + USER.encode() + b"\r\nSubject: x\r\n\r\nhi\r\n"),
             400, "invalidArgument", "Recipient address required"),
            ("bad To", lambda: self.send_raw(token, message("not an address")),
             400, "invalidArgument", "Invalid To header"),
            ("bad base64", lambda: self.send_raw(token, "***", encode=False),
             400, "invalidArgument", None),
            ("no raw", lambda: self.gmail("POST", "/gmail/v1/users/me/messages/send", token,
                                          b"{}", "application/json"),
             400, "invalidArgument", "'raw' RFC822 payload message string or uploading "
                                     "message via /upload/* URL required"),
            ("media type", lambda: self.upload(token, message(), ctype="text/plain"),
             400, "badRequest", "Media type 'text/plain' is not supported. Valid media types: "
                                "[message/*]"),
            ("no uploadType", lambda: self.gmail("POST", "/upload/gmail/v1/users/me/messages/"
                                                 "send", token, message(), "message/rfc822"),
             400, "badRequest", None),
        ]
        for name, call, st, reason, text in cases:
            with self.subTest(name):
                status, _, body = call()
                self.assertGoogleError(status, body, st, reason, "INVALID_ARGUMENT", text)
        self.fake.set_max_recipients(2)
        status, _, body = self.send_raw(token, message("a@example.net, b@example.net",
                                                       extra=b"Cc: c@example.net\r\n"))
        self.assertGoogleError(status, body, 400, "invalidArgument", "INVALID_ARGUMENT")
        self.assertEqual(self.fake.sent, [])

    def test_authentication_errors(self):
        status, h, body = self.send_raw(None, message())
        self.assertGoogleError(status, body, 401, "required", "UNAUTHENTICATED")
        status, h, body = self.send_raw("ya29.junk", message())
        err = self.assertGoogleError(status, body, 401, "authError", "UNAUTHENTICATED")
        self.assertEqual(err["errors"][0]["message"], "Invalid Credentials")
        self.assertIn('error="invalid_token"', h["WWW-Authenticate"])

        token = self.token()
        self.fake.expire_tokens()
        status, _, body = self.send_raw(token, message())
        self.assertGoogleError(status, body, 401, "authError", "UNAUTHENTICATED")
        token = self.token()
        self.fake.revoke_tokens(USER)
        status, _, body = self.send_raw(token, message())
        self.assertGoogleError(status, body, 401, "authError", "UNAUTHENTICATED")

        # A token without a sending scope.
        self.fake.grant_delegation(SA, [READONLY], domain=DOMAIN)
        status, h, body = self.send_raw(self.token(scope=READONLY), message())
        self.assertGoogleError(status, body, 403, "insufficientPermissions", "PERMISSION_DENIED",
                               "Request had insufficient authentication scopes.")
        self.assertIn('error="insufficient_scope"', h["WWW-Authenticate"])
        self.assertEqual(self.fake.sent, [])

    def test_token_of_another_user_refused(self):
        token = self.token(sub=USER)
        status, _, body = self.send_raw(token, message(), user=OTHER)
        self.assertGoogleError(status, body, 403, "forbidden", "PERMISSION_DENIED",
                               "Delegation denied for %s" % USER)
        status, _, body = self.upload(token, message(), user=OTHER)
        self.assertGoogleError(status, body, 403, "forbidden", "PERMISSION_DENIED")
        self.assertEqual(self.fake.sent, [])
        self.assertEqual(self.send_raw(self.token(sub=OTHER), message(), user=OTHER)[0], 200)
        self.assertEqual(self.fake.sent[0].user, OTHER)

    def test_precondition_errors(self):
        status, _, body = self.send_raw(self.token(sub=None), message())
        self.assertGoogleError(status, body, 400, "failedPrecondition", "FAILED_PRECONDITION",
                               "Precondition check failed.")
        self.fake.set_mail_enabled(USER, False)
        status, _, body = self.send_raw(self.token(), message())
        self.assertGoogleError(status, body, 400, "failedPrecondition", "FAILED_PRECONDITION",
                               "Mail service not enabled")


class LimitsAndFaultsTest(FakeGoogleTestBase):
    def test_error_classes_through_fail_next(self):
        token = self.token()
        cases = [
            (400, None, "failedPrecondition", "global", "FAILED_PRECONDITION"),
            (403, "userRateLimitExceeded", "userRateLimitExceeded", "usageLimits",
             "PERMISSION_DENIED"),
            (403, "dailyLimitExceeded", "dailyLimitExceeded", "usageLimits",
             "PERMISSION_DENIED"),
            (403, "domainPolicy", "domainPolicy", "global", "PERMISSION_DENIED"),
            (500, None, "backendError", "global", "INTERNAL"),
            (502, None, "backendError", "global", "UNAVAILABLE"),
            (503, None, "backendError", "global", "UNAVAILABLE"),
            (504, None, "backendError", "global", "DEADLINE_EXCEEDED"),
        ]
        for st, reason, want_reason, domain, status_name in cases:
            with self.subTest(status=st, reason=reason):
                self.fake.fail_next(1, st, reason=reason)
                status, h, body = self.send_raw(token, message())
                self.assertGoogleError(status, body, st, want_reason, status_name,
                                       domain=domain)
                self.assertIsNone(h.get("Retry-After"))
        self.assertEqual(self.fake.sent, [])
        self.assertEqual(self.send_raw(token, message())[0], 200)

    def test_429_retry_after(self):
        token = self.token()
        self.fake.fail_next(1, 429, retry_after=7)
        before = time.time()
        status, h, body = self.send_raw(token, message())
        err = self.assertGoogleError(status, body, 429, "rateLimitExceeded",
                                     "RESOURCE_EXHAUSTED", domain="usageLimits")
        self.assertEqual(h["Retry-After"], "7")
        m = re.fullmatch(r"User-rate limit exceeded\. Retry after "
                         r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) \(Mail sending\)",
                         err["message"])
        self.assertTrue(m, err["message"])
        stamp = m.group(1)
        at = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) \
            + int(stamp[20:23]) / 1000
        self.assertAlmostEqual(at, before + 7, delta=3)
        # Without retry_after: the time is only in the text, no header.
        self.fake.fail_next(1, 429, reason="userRateLimitExceeded")
        status, h, body = self.send_raw(token, message())
        self.assertGoogleError(status, body, 429, "userRateLimitExceeded", "RESOURCE_EXHAUSTED",
                               domain="usageLimits")
        self.assertIsNone(h.get("Retry-After"))
        self.assertEqual(self.send_raw(token, message())[0], 200)

    def test_rate_and_daily_limits(self):
        token = self.token()
        self.fake.set_rate_limit(2)
        self.assertEqual(self.send_raw(token, message())[0], 200)
        self.assertEqual(self.send_raw(token, message())[0], 200)
        status, h, body = self.send_raw(token, message())
        err = self.assertGoogleError(status, body, 429, "rateLimitExceeded",
                                     "RESOURCE_EXHAUSTED", domain="usageLimits")
        self.assertIn("'Queries per minute per user'", err["message"])
        self.assertIsNone(h.get("Retry-After"))
        self.fake.set_rate_limit(0)
        self.fake.set_daily_limits(messages=3)
        status, _, body = self.send_raw(token, message())
        self.assertEqual(status, 200, body)
        status, _, body = self.send_raw(token, message())
        err = self.assertGoogleError(status, body, 429, "rateLimitExceeded",
                                     "RESOURCE_EXHAUSTED", domain="usageLimits")
        self.assertRegex(err["message"], r"^User-rate limit exceeded\. Retry after .* "
                                         r"\(Mail sending\)$")
        self.assertEqual(len(self.fake.sent), 3)

    def test_concurrency_limit(self):
        token = self.token()
        self.fake.set_concurrency_limit(2)
        self.fake.delay(1.0)

        def one():
            status, h, body = self.send_raw(token, message())
            return status, body

        results = https_fake_client.in_threads(5, one)
        statuses = sorted(r[0] for r in results)
        self.assertEqual(len(statuses), 5, results)
        self.assertEqual(statuses.count(200) + statuses.count(429), 5, results)
        self.assertGreaterEqual(statuses.count(200), 2, results)
        throttled = [b for s, b in results if s == 429]
        self.assertGreaterEqual(len(throttled), 1, results)
        for body in throttled:
            self.assertEqual(body["error"]["message"], "Too many concurrent requests for user.")
        self.assertEqual(len(self.fake.sent), statuses.count(200))

    def test_reset_and_delay(self):
        token = self.token()
        self.fake.reset_next(1)
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.send_raw(token, message())
        self.assertEqual(self.fake.sent, [])
        self.fake.reset_next(1, after_processing=True)
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.send_raw(token, message())
        self.assertEqual(len(self.fake.sent), 1)          # accepted, answer lost
        self.assertIsNone(self.fake.requests[-1].status)
        self.fake.delay(0.5, n=1)
        start = time.monotonic()
        self.assertEqual(self.send_raw(token, message())[0], 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.5)
        self.fake.reset_next(1, endpoint="token")
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.ask(self.jwt())
        self.token()

    def test_openssl_fallback(self):
        """The fake's crypto without the cryptography package: key
        generation, signing and verification through openssl."""
        saved = fake_google.CRYPTO_BACKEND
        fake_google.CRYPTO_BACKEND = "openssl"
        try:
            key = self.fake.add_service_account("fallback@mailbridge-test.iam."
                                                "gserviceaccount.com")
            self.fake.grant_delegation(key["client_id"], [GMAIL_SEND])
            status, _, body = self.ask(self.jwt(key=key))
            self.assertEqual(status, 200, body)
            status, _, body = self.ask(make_assertion(key, sub=USER))
            self.assertEqual(status, 200, body)
            status, _, body = self.ask(self.jwt(key=key, claims={"sub": OTHER})[:-4] + "AAAA")
            self.assertTokenError(status, body, 400, "invalid_grant", "Invalid JWT Signature.")
        finally:
            fake_google.CRYPTO_BACKEND = saved


if __name__ == "__main__":
    unittest.main()
