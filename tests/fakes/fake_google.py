"""A fake of Google's OAuth 2.0 token endpoint (service accounts with
domain-wide delegation) and of the Gmail API's users.messages.send, over
HTTPS on 127.0.0.1, for the end-to-end tests of the gmail provider and the
Google service-account token source.

It speaks the wire protocol Google documents publicly and the relay speaks
to Google (see shared/reference/google.md):

- `POST /token`, form-encoded, grant_type
  urn:ietf:params:oauth:grant-type:jwt-bearer with an RS256 JWT `assertion`
  signed by a service account key (iss, scope, aud, iat, exp, optional sub
  and kid). Answered with `{"access_token","expires_in":3599,"token_type"}`
  or `{"error","error_description"}` (invalid_grant, unauthorized_client,
  invalid_scope, ...).
- `POST /gmail/v1/users/{userId}/messages/send` with JSON `{"raw": base64url}`,
  and the media upload URI `/upload/gmail/v1/users/{userId}/messages/send`
  with uploadType=media (message/rfc822), multipart (JSON metadata part +
  message part) or resumable (a session, then PUTs with Content-Range).
  Answered with `{"id","threadId","labelIds":["SENT"]}` or Google's JSON
  error `{"error":{"code","message","errors":[{"message","domain","reason"}],
  "status"}}`.

One server serves both: the key file's token_uri is `token_uri`
(`base_url + "/token"`), the Gmail API base is `base_url`.

Tests drive it in-process:

    fake = FakeGoogle().start()               # or FakeGoogle(ca=TestCA())
    key = fake.add_service_account("relay@proj.iam.gserviceaccount.com")
    fake.add_user("scanner@example.com")
    fake.grant_delegation(key["client_id"], [GMAIL_SEND])
    fake.write_key_file(path)                 # the JSON key file Google issues
    ... run the relay with the key file, Gmail endpoint fake.base_url, CA fake.ca_file
    [msg] = fake.wait_sent(1)
    msg.user, msg.raw, msg.to, msg.cc, msg.bcc, msg.via
    fake.stop()

Faults (fail_next, delay, reset_next, set_token_error), limits (per-user
concurrency, per-minute quota, daily sending limits, message size) and a
request log without secrets let tests check retries, throttling and
classification.

Signatures are checked with the `cryptography` package when it can be
imported, else with the openssl command line tool (as test_ca.py does);
MB_FAKE_GOOGLE_CRYPTO=openssl forces the latter.

Thread-safe: the server answers on one thread per connection; all state is
behind one lock, and sleeps happen outside it.
"""

import base64
import binascii
import email.parser
import email.policy
import email.utils
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote

try:
    from .fake_base import run_until_interrupted
    from .https_fake import Fault, HttpsFake, Response, recent, unique
    from .https_fake import LogEntry as BaseLogEntry
    from .test_ca import b64url, run_openssl, sign, signed_jwt, split_jwt, temp_file, verify
except ImportError:
    from fake_base import run_until_interrupted
    from https_fake import Fault, HttpsFake, Response, recent, unique
    from https_fake import LogEntry as BaseLogEntry
    from test_ca import b64url, run_openssl, sign, signed_jwt, split_jwt, temp_file, verify

# --------------------------------------------------------------------------
# Crypto: RS256 over the cryptography package, or openssl as a fallback.

CRYPTO_BACKEND = "openssl"
if os.environ.get("MB_FAKE_GOOGLE_CRYPTO", "").lower() != "openssl":
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        CRYPTO_BACKEND = "cryptography"
    except ImportError:
        pass


def generate_rsa_key(bits=2048):
    """(private key PEM as PKCS#8 text, public key PEM text), the form a
    service account key file holds."""
    if CRYPTO_BACKEND == "cryptography":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode("ascii")
        pub = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        return priv, pub
    priv = run_openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits)
    pub = run_openssl("pkey", "-pubout", input=priv)
    return priv.decode("ascii"), pub.decode("ascii")


def rs256_sign(private_pem, data):
    """RSASSA-PKCS1-v1_5 with SHA-256 over `data` (bytes)."""
    if CRYPTO_BACKEND == "cryptography":
        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    with temp_file(private_pem) as key_file:
        return sign(key_file, data, "RS256")


def rs256_verify(public_pem, data, signature):
    """True when `signature` is a valid RS256 signature of `data`."""
    if CRYPTO_BACKEND == "cryptography":
        try:
            key = serialization.load_pem_public_key(public_pem.encode("ascii"))
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False
    with temp_file(public_pem) as pubkey_file:
        return verify(pubkey_file, data, signature, "RS256")


def make_assertion(key, scope=None, sub=None, aud=None, iat=None, lifetime=3600, exp=None,
                   header=None, claims=None, signer=None):
    """A JWT bearer assertion as Google's client libraries build it from a
    key file dict (`key`): header {"alg":"RS256","typ":"JWT","kid":
    private_key_id}, claims iss, scope, aud (the key's token_uri), iat, exp,
    and sub when given. `header` / `claims` add or replace entries (a value
    None removes one). `signer`: signing input bytes -> RS256 signature
    (default: rs256_sign() with the key's private key)."""
    now = int(time.time())
    iat = now if iat is None else iat
    hdr = {"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}
    body = {"iss": key["client_email"], "scope": GMAIL_SEND if scope is None else scope,
            "aud": key["token_uri"] if aud is None else aud, "iat": iat,
            "exp": iat + lifetime if exp is None else exp}
    if sub is not None:
        body["sub"] = sub
    if signer is None:
        def signer(data):
            return rs256_sign(key["private_key"], data)
    return signed_jwt(hdr, body, signer, header, claims)


# --------------------------------------------------------------------------
# Wire facts

MB = 1024 * 1024
MAX_MESSAGE_SIZE = 36700160          # messages.send maxSize (35 MB)
RAW_REQUEST_LIMIT = 50 * MB          # JSON request bodies (undocumented; see set_raw_request_limit)
BODY_KEEP_LIMIT = 64 * MB            # bigger bodies are read and dropped
RESUMABLE_CHUNK = 256 * 1024         # resumable chunks are multiples of this (but the last)
RESUMABLE_LIFETIME = 7 * 86400       # an upload session URI lasts a week

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
GMAIL_COMPOSE = "https://www.googleapis.com/auth/gmail.compose"
GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
MAIL_GOOGLE_COM = "https://mail.google.com/"
SEND_SCOPES = frozenset({MAIL_GOOGLE_COM, GMAIL_MODIFY, GMAIL_COMPOSE, GMAIL_SEND})

# Token endpoint error descriptions.
SHORT_LIVED = ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
               "reasonable timeframe. Check your iat and exp values in the JWT claim.")
BAD_SIGNATURE = "Invalid JWT Signature."
BAD_AUDIENCE = "Invalid JWT: Failed audience check."
BAD_JWT = "Invalid JWT: Malformed."
ACCOUNT_NOT_FOUND = "Invalid grant: account not found"
UNKNOWN_USER = "Invalid email or User ID"
UNAUTHORIZED_CLIENT = ("Client is unauthorized to retrieve access tokens using this method, "
                       "or client not authorized for any of the scopes requested.")
INVALID_SCOPE = "Invalid OAuth scope or ID token audience provided."

TOKEN_ERROR_STATUS = {"invalid_grant": 400, "unauthorized_client": 401, "invalid_scope": 400,
                      "invalid_request": 400, "unsupported_grant_type": 400,
                      "invalid_client": 401, "internal_failure": 500,
                      "temporarily_unavailable": 503}

# Gmail error texts.
AUTH_ERROR_MESSAGE = ("Request had invalid authentication credentials. Expected OAuth 2 access "
                      "token, login cookie or other valid authentication credential. See "
                      "https://developers.google.com/identity/sign-in/web/devconsole-project.")
REQUIRED_MESSAGE = ("Request is missing required authentication credential. Expected OAuth 2 "
                    "access token, login cookie or other valid authentication credential. See "
                    "https://developers.google.com/identity/sign-in/web/devconsole-project.")
SCOPES_MESSAGE = "Request had insufficient authentication scopes."
RAW_REQUIRED = ("'raw' RFC822 payload message string or uploading message via /upload/* URL "
                "required")
RECIPIENT_REQUIRED = "Recipient address required"
PRECONDITION = "Precondition check failed."
MAIL_NOT_ENABLED = "Mail service not enabled"
UPLOAD_PARAMS = ("Upload requests must include an uploadType URL parameter and a URL path "
                 "beginning with /upload/")
CONCURRENT = "Too many concurrent requests for user."

# reason -> (domain, errors[0].message)
REASONS = {
    "failedPrecondition": ("global", PRECONDITION),
    "invalidArgument": ("global", "Invalid argument."),
    "badRequest": ("global", "Bad Request"),
    "required": ("global", "Login Required."),
    "authError": ("global", "Invalid Credentials"),
    "insufficientPermissions": ("global", "Insufficient Permission"),
    "forbidden": ("global", "Forbidden"),
    "domainPolicy": ("global", "The domain administrators have disabled Gmail apps."),
    "dailyLimitExceeded": ("usageLimits", "Daily Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Quota Exceeded"),
    "notFound": ("global", "Requested entity was not found."),
    "uploadTooLarge": ("global", "Media is too large. Limit: %d bytes" % MAX_MESSAGE_SIZE),
    "backendError": ("global", "Backend Error"),
}
DEFAULT_REASON = {400: "failedPrecondition", 401: "authError", 403: "insufficientPermissions",
                  404: "notFound", 413: "uploadTooLarge", 429: "rateLimitExceeded",
                  500: "backendError", 502: "backendError", 503: "backendError",
                  504: "backendError"}
STATUS_NAME = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ABORTED", 413: "INVALID_ARGUMENT",
               429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
               502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
SERVER_MESSAGE = {500: "Backend Error", 502: "Bad Gateway",
                  503: "The service is currently unavailable.", 504: "Deadline exceeded."}

ADDRESS_RE = re.compile(r"^[^@\s<>,;:\"]+@[^@\s<>,;:\"]+\.[^@\s<>,;:\"]+$")


def _norm(addr):
    return (addr or "").strip().lower()


def _rfc3339_ms(ts):
    """2026-03-07T18:18:23.688Z"""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _mail_sending_limit(retry_at):
    return "User-rate limit exceeded. Retry after %s (Mail sending)" % _rfc3339_ms(retry_at)


def _quota_message(project_number):
    return ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
            "of service 'gmail.googleapis.com' for consumer 'project_number:%s'."
            % project_number)


# --------------------------------------------------------------------------
# State records (attributes are public: tests read them)


@dataclass
class ServiceAccountKey:
    key_id: str                # private_key_id, the JWT header's kid
    private_pem: str
    public_pem: str
    created: float
    deleted: bool = False


@dataclass
class ServiceAccount:
    email: str
    client_id: str             # the numeric OAuth client id delegation is granted to
    project_id: str
    project_number: str
    keys: dict = field(default_factory=dict)      # key_id -> ServiceAccountKey
    disabled: bool = False


@dataclass
class User:
    email: str
    domain: str
    mail_enabled: bool = True  # Gmail service on for the user in the admin console
    aliases: set = field(default_factory=set)     # verified send-as addresses
    display_name: str = ""


@dataclass
class Token:
    """An access token the fake issued."""
    value: str
    service_account: str
    client_id: str
    user: object               # the impersonated user (sub), None for the account itself
    scopes: frozenset
    issued_at: float
    expires_at: float
    key_id: str = ""
    revoked: bool = False


@dataclass
class UploadSession:
    """A resumable upload of messages.send."""
    id: str
    user: str
    token: Token
    metadata: dict
    total: object              # declared size (X-Upload-Content-Length or Content-Range), or None
    created: float
    expires_at: float
    data: bytearray = field(default_factory=bytearray)

    @property
    def received(self):
        return len(self.data)


@dataclass
class SentMessage:
    """A message the fake accepted for sending."""
    user: str                  # the sending user (the token's sub), as registered
    raw: bytes                 # the RFC 822 message as uploaded
    to: list                   # addresses from the To, Cc and Bcc headers, lower-cased
    cc: list
    bcc: list
    via: str                   # raw | media | multipart | resumable
    time: float
    request_id: str
    id: str                    # the Gmail message id returned
    thread_id: str
    service_account: str = ""
    client_id: str = ""
    from_header: object = None  # the From address in the message, lower-cased
    sent_from: str = ""        # what Gmail sends as: From if the user or an alias, else the user
    metadata: dict = field(default_factory=dict)  # JSON metadata (threadId, labelIds, ...)

    @property
    def recipients(self):
        """To, Cc and Bcc together, lower-cased, each once."""
        return unique(self.to + self.cc + self.bcc)

    @property
    def email(self):
        """The message parsed as an email.message.EmailMessage."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.raw)

    @property
    def headers(self):
        """The header block only, parsed (cheap for large messages)."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(
            _header_block(self.raw), headersonly=True)

    @property
    def subject(self):
        return self.headers.get("Subject")

    @property
    def size(self):
        return len(self.raw)


@dataclass
class LogEntry(BaseLogEntry):
    """One request as the fake saw it; no secrets (no query strings, no
    bodies, no tokens or assertions). endpoint: token | gmail | upload | other."""
    user: object = None        # the Gmail user the request acted for, or the JWT's sub
    service_account: object = None
    grant_type: object = None
    upload_type: object = None
    error: object = None       # OAuth error code or Gmail error reason
    content_type: object = None
    body_length: int = 0


def _header_block(raw):
    """The bytes of the header section (up to and including the empty line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i + len(sep)]
    return raw


# --------------------------------------------------------------------------
# Requests and responses


class _TokenError(Exception):
    def __init__(self, error, description, status=None):
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status or TOKEN_ERROR_STATUS.get(error, 400)


class _GmailError(Exception):
    """A Gmail API error. `message` is the top-level message, `detail` the
    errors[0] message (both default from the reason)."""

    def __init__(self, status, reason=None, message=None, detail=None, retry_after=None,
                 headers=None, domain=None, location=None, status_name=None):
        reason = reason or DEFAULT_REASON.get(status, "backendError")
        super().__init__(reason)
        ddomain, dmsg = REASONS.get(reason, ("global", "Error"))
        if status in SERVER_MESSAGE and reason == "backendError" and status != 500:
            dmsg = SERVER_MESSAGE[status]
        self.status = status
        self.reason = reason
        self.domain = domain or ddomain
        self.detail = detail if detail is not None else (message if message is not None
                                                         else dmsg)
        if message is None:
            message = {"authError": AUTH_ERROR_MESSAGE, "required": REQUIRED_MESSAGE,
                       "insufficientPermissions": SCOPES_MESSAGE}.get(reason, self.detail)
        self.message = message
        self.retry_after = retry_after
        self.headers = list(headers or [])
        self.location = location
        if status_name is None:
            status_name = ("FAILED_PRECONDITION" if reason == "failedPrecondition"
                           else STATUS_NAME.get(status, "UNKNOWN"))
        self.status_name = status_name


@dataclass
class _Fault(Fault):
    reason: object = None      # Gmail error reason, or OAuth error code on the token endpoint
    retry_at: object = None


# --------------------------------------------------------------------------
# The fake


class FakeGoogle(HttpsFake):
    """Google token endpoint + Gmail send over HTTPS on 127.0.0.1 (see module doc).
    base_url is the Gmail API base (https://gmail.googleapis.com in production)."""

    name = "fake_google"
    server_version = "ESF"
    api = "gmail"
    body_limit = BODY_KEEP_LIMIT
    length_required_methods = ("POST", "PUT")
    log_fields = ("user", "service_account", "grant_type", "upload_type", "error")
    fault_class = _Fault
    log_entry_class = LogEntry

    def __init__(self, ca=None, host="127.0.0.1", port=0, verbose=False):
        super().__init__(ca, host, port, verbose)

        # settings
        self.token_lifetime = 3599            # expires_in of the access tokens
        self.clock_skew = 300                 # tolerated for iat / exp
        self.max_assertion_lifetime = 3600    # exp - iat
        self.max_message_size = MAX_MESSAGE_SIZE
        self.raw_request_limit = RAW_REQUEST_LIMIT
        self.max_recipients = 100             # per message, through SMTP or the API
        self.daily_message_limit = 2000       # per user, rolling 24 h
        self.daily_recipient_limit = 10000    # per user, rolling 24 h
        self.rate_limit = 150                 # messages.send calls per user per minute
        self.concurrency_limit = 10           # concurrent requests per user
        self.throttle_retry_after = None      # Retry-After on the fake's own 429s (None: none)
        self.enforce_chunk_granularity = False  # resumable chunks multiples of 256 KiB

        # state
        self._accounts = {}       # email (lower) -> ServiceAccount
        self._domains = set()
        self._users = {}          # email (lower) -> User
        self._grants = {}         # domain or "*" -> {client_id: set(scopes)}
        self._tokens = {}         # value -> Token
        self._calls = {}          # user -> deque of call times (per-minute quota)
        self._daily = {}          # user -> deque of (time, recipients)
        self._next_id = int(time.time() * 1000) << 20
        # _sessions: upload id -> UploadSession
        # token_events: dicts with time, ok, error, service_account, user, scopes

    # ---- addresses ---------------------------------------------------------

    @property
    def token_uri(self):
        """The token endpoint (https://oauth2.googleapis.com/token in production)."""
        return self.base_url + "/token"

    # ---- registration ------------------------------------------------------

    def add_service_account(self, email, client_id=None, project_id=None):
        """Creates a service account with one RSA key; returns its JSON key
        file as a dict (what the Cloud console downloads), token_uri
        pointing at the fake. `client_id`: the numeric OAuth client id
        (21 digits, random by default) that delegation is granted to."""
        project_id = project_id or (email.split("@", 1)[1].split(".", 1)[0]
                                    if email.endswith(".iam.gserviceaccount.com")
                                    else "mailbridge-test")
        with self._lock:
            sa = self._accounts.get(email.lower())
            if sa is None:
                sa = ServiceAccount(
                    email=email,
                    client_id=client_id or str(10 ** 20 + secrets.randbelow(9 * 10 ** 20)),
                    project_id=project_id,
                    project_number=str(10 ** 11 + secrets.randbelow(9 * 10 ** 11)))
                self._accounts[email.lower()] = sa
            elif client_id:
                sa.client_id = client_id
        key = self.add_key(email)
        return self.key_file(email, key.key_id)

    def add_key(self, email):
        """Adds a key to a service account (key rotation); returns the
        ServiceAccountKey. key_file(email, key.key_id) gives its key file."""
        priv, pub = generate_rsa_key()
        k = ServiceAccountKey(key_id=secrets.token_hex(20), private_pem=priv, public_pem=pub,
                              created=time.time())
        with self._lock:
            self._account(email).keys[k.key_id] = k
        return k

    def delete_key(self, email, key_id=None):
        """Deletes a key (the latest when key_id is None): assertions signed
        with it fail with "Invalid JWT Signature."."""
        with self._lock:
            sa = self._account(email)
            key_id = key_id or list(sa.keys)[-1]
            sa.keys[key_id].deleted = True

    def disable_service_account(self, email, disabled=True):
        """A disabled (or deleted) account gets "Invalid grant: account not found"."""
        with self._lock:
            self._account(email).disabled = disabled

    def service_account(self, email):
        with self._lock:
            return self._account(email)

    def _account(self, email):
        sa = self._accounts.get((email or "").lower())
        if sa is None:
            raise KeyError("no service account %s" % email)
        return sa

    def key_file(self, email=None, key_id=None):
        """The JSON key file dict of a service account (the only or latest
        one when `email` is None) and key (its latest live key by default)."""
        with self._lock:
            if email is None:
                if not self._accounts:
                    raise KeyError("no service account")
                sa = list(self._accounts.values())[-1]
            else:
                sa = self._account(email)
            if key_id is None:
                live = [k for k in sa.keys.values() if not k.deleted] or list(sa.keys.values())
                key = live[-1]
            else:
                key = sa.keys[key_id]
            return {
                "type": "service_account",
                "project_id": sa.project_id,
                "private_key_id": key.key_id,
                "private_key": key.private_pem,
                "client_email": sa.email,
                "client_id": sa.client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": self.token_uri,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                        + quote(sa.email, safe=""),
                "universe_domain": "googleapis.com",
            }

    def write_key_file(self, path, email=None, key_id=None):
        """Writes key_file(email, key_id) to `path` (mode 0600) as Google
        formats it; returns the path."""
        path = Path(path)
        data = json.dumps(self.key_file(email, key_id), indent=2) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        return path

    def add_domain(self, domain):
        """Registers a Workspace domain (users of it can be impersonated
        where delegation is granted)."""
        with self._lock:
            self._domains.add(domain.lower())

    def add_user(self, email, mail_enabled=True, aliases=(), display_name=None):
        """Registers (or updates) a Workspace user; its domain is added.
        mail_enabled=False: the Gmail service is off for the user (sends get
        400 failedPrecondition "Mail service not enabled"). `aliases`:
        verified send-as addresses (a From outside them is sent as the
        user)."""
        domain = email.rsplit("@", 1)[-1].lower()
        with self._lock:
            self._domains.add(domain)
            u = self._users.get(email.lower())
            if u is None:
                u = User(email=email, domain=domain)
                self._users[email.lower()] = u
            u.mail_enabled = mail_enabled
            u.aliases = {_norm(a) for a in aliases}
            u.display_name = display_name or email.split("@")[0]
            return u

    def remove_user(self, email):
        with self._lock:
            self._users.pop(email.lower(), None)

    def set_mail_enabled(self, email, enabled=True):
        with self._lock:
            self._users[email.lower()].mail_enabled = enabled

    def _client_id(self, client_id):
        if client_id and "@" in client_id:
            return self._account(client_id).client_id
        return client_id

    def grant_delegation(self, client_id, scopes=(GMAIL_SEND,), domain=None):
        """Domain-wide delegation as an admin grants it (Security > API
        controls): the OAuth client `client_id` (or a service account
        email) may act for users of `domain` (every domain when None) with
        these scopes. Adds to earlier grants."""
        if isinstance(scopes, str):
            scopes = scopes.replace(",", " ").split()
        with self._lock:
            client_id = self._client_id(client_id)
            key = domain.lower() if domain else "*"
            self._grants.setdefault(key, {}).setdefault(client_id, set()).update(scopes)

    def revoke_delegation(self, client_id, scopes=None, domain=None):
        """Removes a grant (only these scopes when given). Tokens already
        issued stay valid until they expire, as with Google."""
        with self._lock:
            client_id = self._client_id(client_id)
            key = domain.lower() if domain else "*"
            grants = self._grants.get(key, {})
            if client_id not in grants:
                return
            if scopes is None:
                del grants[client_id]
            else:
                if isinstance(scopes, str):
                    scopes = scopes.replace(",", " ").split()
                grants[client_id] -= set(scopes)

    def _granted(self, client_id, domain):
        out = set()
        for key in ("*", domain):
            out |= self._grants.get(key, {}).get(client_id, set())
        return out

    # ---- settings ----------------------------------------------------------

    def set_max_message_size(self, nbytes):
        self.max_message_size = nbytes

    def set_raw_request_limit(self, nbytes):
        """JSON request bodies above this get 400 "Request payload size
        exceeds the limit: N bytes."."""
        self.raw_request_limit = nbytes

    def set_concurrency_limit(self, n):
        """Concurrent Gmail requests per user; 0 = unlimited. Over it: 429
        rateLimitExceeded "Too many concurrent requests for user."."""
        self.concurrency_limit = n

    def set_rate_limit(self, per_minute):
        """messages.send calls per user per minute (the per-user quota:
        15,000 units at 100 a call); 0 = unlimited. Over it: 429
        rateLimitExceeded with the quota message."""
        self.rate_limit = per_minute

    def set_daily_limits(self, messages=2000, recipients=10000):
        """Workspace sending limits per user over a rolling 24 h window;
        0 = unlimited. Over it: 429 rateLimitExceeded "User-rate limit
        exceeded. Retry after ... (Mail sending)"."""
        self.daily_message_limit = messages
        self.daily_recipient_limit = recipients

    def set_max_recipients(self, n):
        self.max_recipients = n

    def set_token_lifetime(self, seconds):
        self.token_lifetime = seconds

    # ---- tokens ------------------------------------------------------------

    def expire_tokens(self, user=None):
        """Access tokens issued so far (for `user` only when given) expire now."""
        with self._lock:
            now = time.time()
            for t in self._tokens.values():
                if user is None or _norm(t.user) == _norm(user):
                    t.expires_at = min(t.expires_at, now - 1)

    def revoke_tokens(self, user=None):
        """Access tokens issued so far (for `user` only) become invalid."""
        with self._lock:
            for t in self._tokens.values():
                if user is None or _norm(t.user) == _norm(user):
                    t.revoked = True

    @property
    def tokens(self):
        return self._snapshot(self._tokens.values())

    def token_count(self, user=None, ok=None, service_account=None):
        """Token requests seen, optionally only those for one impersonated
        user (sub), one service account (iss), and only successful (ok=True)
        or failed (ok=False) ones."""
        with self._lock:
            return sum(1 for e in self.token_events
                       if (user is None or _norm(e["user"]) == _norm(user))
                       and (service_account is None
                            or _norm(e["service_account"]) == _norm(service_account))
                       and (ok is None or e["ok"] == ok))

    # ---- faults ------------------------------------------------------------

    def fail_next(self, n=1, status=503, reason=None, message=None, retry_after=None,
                  retry_at=None, endpoint=None, path_contains=None, method=None):
        """The next `n` matching requests get `status` with a Gmail JSON
        error (reason and messages from Google's tables unless given), or an
        OAuth error body on the token endpoint (`reason` is then the error
        code). `retry_after`: a Retry-After header (seconds), also the time
        named in the text of a 429 rateLimitExceeded; `retry_at`: that time
        (epoch seconds) without a header. By default only Gmail requests
        match; `endpoint`: gmail | upload | token | any; `path_contains`
        alone matches any endpoint."""
        self._add_fault("fail", n, endpoint, path_contains, method, status=status,
                        reason=reason, message=message, retry_after=retry_after,
                        retry_at=retry_at)

    def delay(self, seconds, n=None, endpoint=None, path_contains=None, method=None):
        """Matching requests (Gmail by default) are answered `seconds` later,
        for the next `n` or until delay(0). The time counts against the
        per-user concurrency limit, as a slow backend would."""
        self._set_delay(seconds, n, endpoint, path_contains, method)

    def reset_next(self, n=1, endpoint=None, path_contains=None, method=None,
                   after_processing=False):
        """The next `n` matching requests are read, then the connection is
        reset without an answer. after_processing=True: the request takes
        effect first (a send is accepted and recorded), as when an answer is
        lost on the way back."""
        self._add_fault("reset", n, endpoint, path_contains, method,
                        after_processing=after_processing)

    def set_token_error(self, error, description=None, status=None, n=None):
        """Token requests fail with OAuth error `error` (e.g. invalid_grant,
        unauthorized_client, internal_failure) for the next `n` requests
        (None: until clear_token_error())."""
        self._force_token_error(n, error=error, description=description or "", status=status)

    # ---- dispatch ----------------------------------------------------------

    @staticmethod
    def _classify(path):
        if path == "/token":
            return "token"
        if path.startswith("/gmail/v1/"):
            return "gmail"
        if path.startswith("/upload/gmail/v1/"):
            return "upload"
        return "other"

    def _length_required(self, req):
        req.log["error"] = "lengthRequired"
        return Response(411, b"<!DOCTYPE html>\n<html lang=en><title>Error 411 (Length "
                        b"Required)!!1</title></html>\n",
                        [("Content-Type", "text/html; charset=UTF-8")])

    def _not_found(self, req):
        return self._gmail_error_response(req, _GmailError(
            404, "notFound", "Not Found", detail="Not Found"))

    def _fault_response(self, req, fault):
        if req.endpoint == "token":
            error = fault.reason or ("internal_failure" if fault.status >= 500
                                     else "invalid_grant")
            err = _TokenError(error, fault.message if fault.message is not None
                              else "Backend Error" if fault.status >= 500 else "Bad Request",
                              status=fault.status)
            resp = self._token_error_response(req, err)
            if fault.retry_after is not None:
                resp.headers.append(("Retry-After", str(fault.retry_after)))
            return resp
        reason = fault.reason or DEFAULT_REASON.get(fault.status, "backendError")
        message = fault.message
        if message is None and fault.status == 429 and reason == "rateLimitExceeded":
            at = fault.retry_at or time.time() + (fault.retry_after or 60)
            message = _mail_sending_limit(at)
        return self._gmail_error_response(req, _GmailError(
            fault.status, reason, message, retry_after=fault.retry_after))

    @staticmethod
    def _json(status, obj, headers=None):
        return Response(status, json.dumps(obj, indent=2).encode() + b"\n",
                        [("Content-Type", "application/json; charset=UTF-8")]
                        + list(headers or []))

    # ---- token endpoint ----------------------------------------------------

    @staticmethod
    def _token_headers():
        return [("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
                ("Pragma", "no-cache"), ("Expires", "Mon, 01 Jan 1990 00:00:00 GMT"),
                ("Vary", "Origin"), ("Vary", "X-Origin"), ("Vary", "Referer"),
                ("X-Content-Type-Options", "nosniff")]

    def _token_error_response(self, req, err):
        req.log["error"] = err.error
        return self._json(err.status, {"error": err.error,
                                       "error_description": err.description},
                          self._token_headers())

    def _token_endpoint(self, req):
        event = {"time": time.time(), "ok": False, "error": None, "service_account": None,
                 "user": None, "scopes": None, "description": None}
        try:
            resp = self._token(req, event)
            event["ok"] = True
            return resp
        except _TokenError as e:
            event["error"] = e.error
            event["description"] = e.description
            return self._token_error_response(req, e)
        finally:
            with self._lock:
                self.token_events.append(event)

    def _token(self, req, event):
        if req.method != "POST":
            raise _TokenError("invalid_request", "Invalid request method.", status=405)
        form = {}
        if req.content_type() == "application/x-www-form-urlencoded" and req.body:
            try:
                parsed = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                parsed = {}
            for k, v in parsed.items():
                form[k] = v[0]
        grant = form.get("grant_type")
        req.log["grant_type"] = grant
        forced = self._take_token_error()
        if forced:
            raise _TokenError(forced["error"], forced["description"], forced["status"])
        if not grant:
            raise _TokenError("invalid_request", "Missing required parameter: grant_type")
        if grant != JWT_BEARER_GRANT:
            raise _TokenError("unsupported_grant_type", "Invalid grant_type: " + grant)
        assertion = form.get("assertion")
        if not assertion:
            raise _TokenError("invalid_request", "Missing required parameter: assertion")
        header, claims, signing_input, signature = self._parse_jwt(assertion)
        iss = claims.get("iss")
        event["service_account"] = iss if isinstance(iss, str) else None
        req.log["service_account"] = event["service_account"]
        sub = claims.get("sub")
        if sub is not None and not isinstance(sub, str):
            raise _TokenError("invalid_grant", BAD_JWT)
        event["user"] = sub
        req.log["user"] = sub
        with self._lock:
            sa = self._accounts.get(iss.lower()) if isinstance(iss, str) else None
            keys = dict(sa.keys) if sa else {}
            disabled = sa.disabled if sa else True
        if sa is None or disabled:
            raise _TokenError("invalid_grant", ACCOUNT_NOT_FOUND)
        if header.get("alg") != "RS256":
            raise _TokenError("invalid_grant", BAD_SIGNATURE)
        kid = header.get("kid")
        if kid is not None:
            candidates = [keys[kid]] if kid in keys else []
        else:
            candidates = list(keys.values())
        used = next((k for k in candidates if not k.deleted
                     and rs256_verify(k.public_pem, signing_input, signature)), None)
        if used is None:
            raise _TokenError("invalid_grant", BAD_SIGNATURE)
        if claims.get("aud") != self.token_uri:
            raise _TokenError("invalid_grant", BAD_AUDIENCE)
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (not isinstance(iat, (int, float)) or isinstance(iat, bool)
                or not isinstance(exp, (int, float)) or isinstance(exp, bool)
                or exp - iat > self.max_assertion_lifetime or exp <= iat
                or iat > now + self.clock_skew or exp < now - self.clock_skew):
            raise _TokenError("invalid_grant", SHORT_LIVED)
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
        event["scopes"] = scopes
        if not scopes:
            raise _TokenError("invalid_scope", INVALID_SCOPE)
        user = None
        if sub is not None and _norm(sub) != _norm(sa.email):
            with self._lock:
                u = self._users.get(sub.lower())
                granted = self._granted(sa.client_id, u.domain) if u else set()
            if u is None:
                raise _TokenError("invalid_grant", UNKNOWN_USER)
            if not set(scopes) <= granted:
                raise _TokenError("unauthorized_client", UNAUTHORIZED_CLIENT)
            user = u.email
        tok = Token(value="ya29.c." + b64url(secrets.token_bytes(96)),
                    service_account=sa.email, client_id=sa.client_id, user=user,
                    scopes=frozenset(scopes), issued_at=now,
                    expires_at=now + self.token_lifetime, key_id=used.key_id)
        with self._lock:
            self._tokens[tok.value] = tok
        return self._json(200, {"access_token": tok.value, "expires_in": self.token_lifetime,
                                "token_type": "Bearer"}, self._token_headers())

    @staticmethod
    def _parse_jwt(jwt):
        try:
            return split_jwt(jwt)
        except ValueError:
            raise _TokenError("invalid_grant", BAD_JWT)

    # ---- Gmail -------------------------------------------------------------

    def _gmail_error_response(self, req, err):
        req.log["error"] = err.reason
        item = {"message": err.detail, "domain": err.domain, "reason": err.reason}
        if err.reason in ("authError", "required"):
            item["location"] = "Authorization"
            item["locationType"] = "header"
        elif err.location:
            item["location"] = err.location
            item["locationType"] = "parameter"
        body = {"error": {"code": err.status, "message": err.message, "errors": [item],
                          "status": err.status_name}}
        hdrs = [("Vary", "Origin"), ("Vary", "X-Origin"), ("Vary", "Referer")] + err.headers
        if err.retry_after is not None:
            hdrs.append(("Retry-After", str(err.retry_after)))
        if err.reason == "authError":
            hdrs.append(("WWW-Authenticate",
                         'Bearer realm="https://accounts.google.com/", error="invalid_token"'))
        elif err.reason == "required":
            hdrs.append(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"'))
        elif err.reason == "insufficientPermissions":
            hdrs.append(("WWW-Authenticate",
                         'Bearer realm="https://accounts.google.com/", '
                         'error="insufficient_scope", scope="%s"'
                         % " ".join(sorted(SEND_SCOPES))))
        return self._json(err.status, body, hdrs)

    def _gmail_ok(self, req, obj, status=200, headers=()):
        return self._json(status, obj, [("Vary", "Origin"), ("Vary", "X-Origin"),
                                        ("Vary", "Referer")] + list(headers))

    def _api_endpoint(self, req, delay):
        try:
            return self._gmail(req, delay)
        except _GmailError as e:
            return self._gmail_error_response(req, e)

    def _gmail(self, req, delay):
        upload = req.endpoint == "upload"
        prefix = "/upload/gmail/v1/users/" if upload else "/gmail/v1/users/"
        m = re.match("^" + re.escape(prefix) + r"([^/]+)/messages/send$", req.path)
        if not m:
            raise _GmailError(404, "notFound", "Not Found", detail="Not Found")
        user_id = m.group(1)
        upload_type = req.param("uploadType")
        req.log["upload_type"] = upload_type
        if upload and upload_type == "resumable" and req.param("upload_id") is not None:
            if req.method not in ("PUT", "POST"):
                raise _GmailError(404, "notFound", "Not Found", detail="Not Found")
            return self._resumable_put(req, delay)
        if req.method != "POST":
            raise _GmailError(404, "notFound", "Not Found", detail="Not Found")
        if upload != bool(upload_type):
            raise _GmailError(400, "badRequest", UPLOAD_PARAMS)
        if upload and upload_type not in ("media", "multipart", "resumable"):
            raise _GmailError(400, "badRequest", "Invalid upload type: %s" % upload_type)
        tok = self._authenticate(req)
        user = self._user_for(req, tok, user_id)
        with self._slot(_norm(user.email), delay):
            self._check_rate(user, tok)
            if upload_type == "resumable":
                return self._resumable_start(req, tok, user, user_id)
            if upload_type == "media":
                raw, meta, via = self._media_body(req), {}, "media"
            elif upload_type == "multipart":
                meta, raw = self._multipart_body(req)
                via = "multipart"
            else:
                meta, raw = self._raw_body(req)
                via = "raw"
            return self._accept(req, tok, user, raw, meta, via)

    def _authenticate(self, req):
        auth = (req.header("Authorization") or "").strip()
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise _GmailError(401, "required")
        with self._lock:
            tok = self._tokens.get(value)
        if tok is None or tok.revoked or tok.expires_at <= time.time():
            raise _GmailError(401, "authError")
        req.log["service_account"] = tok.service_account
        if not tok.scopes & SEND_SCOPES:
            raise _GmailError(403, "insufficientPermissions")
        return tok

    def _user_for(self, req, tok, user_id):
        if tok.user is None:
            # A token for the service account itself (no sub): it has no mailbox.
            raise _GmailError(400, "failedPrecondition")
        req.log["user"] = tok.user
        if user_id.lower() != "me" and _norm(user_id) != _norm(tok.user):
            raise _GmailError(403, "forbidden", "Delegation denied for %s" % tok.user)
        with self._lock:
            user = self._users.get(tok.user.lower())
        if user is None:
            raise _GmailError(400, "failedPrecondition")
        if not user.mail_enabled:
            raise _GmailError(400, "failedPrecondition", MAIL_NOT_ENABLED)
        return user

    def _check_rate(self, user, tok):
        if self._rate_wait(self._calls, _norm(user.email), self.rate_limit) is not None:
            with self._lock:
                sa = self._accounts.get(tok.service_account.lower())
            raise _GmailError(429, "rateLimitExceeded",
                              _quota_message(sa.project_number if sa else "0"),
                              retry_after=self.throttle_retry_after)

    def _check_daily(self, user, nrecipients):
        now = time.time()
        with self._lock:
            q = recent(self._daily, _norm(user.email), now - 86400, lambda entry: entry[0])
            over = (self.daily_message_limit and len(q) >= self.daily_message_limit) or (
                self.daily_recipient_limit
                and sum(n for _, n in q) + nrecipients > self.daily_recipient_limit)
            if over:
                at = q[0][0] + 86400 if q else now + 86400
                raise _GmailError(429, "rateLimitExceeded", _mail_sending_limit(at),
                                  retry_after=self.throttle_retry_after)
            q.append((now, nrecipients))

    def _too_large(self):
        return _GmailError(413, "uploadTooLarge", "Media is too large. Limit: %d bytes"
                           % self.max_message_size)

    @staticmethod
    def _media_type_error(ctype):
        return _GmailError(400, "badRequest", "Media type '%s' is not supported. Valid media "
                           "types: [message/*]" % ctype)

    def _raw_body(self, req):
        """(metadata, message bytes) from a JSON Message resource."""
        if req.body is None or req.body_len > self.raw_request_limit:
            raise _GmailError(400, "badRequest", "Request payload size exceeds the limit: %d "
                              "bytes." % self.raw_request_limit)
        if req.content_type() != "application/json" and req.body.strip():
            raise _GmailError(400, "badRequest", "Invalid JSON payload received. Unexpected "
                              "token.")
        meta = self._parse_json(req.body)
        raw = meta.pop("raw", None)
        if raw is None or raw == "":
            raise _GmailError(400, "invalidArgument", RAW_REQUIRED)
        if not isinstance(raw, str):
            raise _GmailError(400, "invalidArgument", "Invalid value at 'message.raw' "
                              "(TYPE_BYTES)", location="raw")
        return meta, self._decode_raw(raw)

    @staticmethod
    def _parse_json(data):
        if not data.strip():
            return {}
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _GmailError(400, "badRequest", "Invalid JSON payload received. Unexpected "
                              "token.")
        if not isinstance(obj, dict):
            raise _GmailError(400, "badRequest", "Invalid JSON payload received. Expected an "
                              "object.")
        return obj

    @staticmethod
    def _decode_raw(raw):
        # Proto3 JSON bytes: standard or URL-safe base64, padded or not.
        text = raw.strip()
        try:
            if re.search(r"[^A-Za-z0-9+/\-_=]", text) or ("=" in text.rstrip("=")):
                raise ValueError
            text = text.rstrip("=")
            if len(text) % 4 == 1:
                raise ValueError
            return base64.b64decode(text.replace("-", "+").replace("_", "/")
                                    + "=" * (-len(text) % 4), validate=True)
        except (ValueError, binascii.Error):
            shown = raw if len(raw) <= 24 else raw[:20] + "..."
            raise _GmailError(400, "invalidArgument", "Invalid value at 'message.raw' "
                              "(TYPE_BYTES), Base64 decoding failed for \"%s\"" % shown,
                              location="raw")

    def _media_body(self, req):
        ctype = req.content_type()
        if not ctype.startswith("message/"):
            raise self._media_type_error(req.header("Content-Type") or "")
        if req.body is None or req.body_len > self.max_message_size:
            raise self._too_large()
        return req.body

    def _multipart_body(self, req):
        ctype = req.header("Content-Type") or ""
        if req.content_type() != "multipart/related":
            raise _GmailError(400, "badRequest", "Invalid multipart request: Content-Type "
                              "must be multipart/related.")
        if req.body is None:
            raise self._too_large()
        m = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', ctype, re.IGNORECASE)
        if not m:
            raise _GmailError(400, "badRequest", "Invalid multipart request with 0 mime parts.")
        boundary = (m.group(1) or m.group(2)).encode("latin-1")
        parts = self._split_multipart(req.body, boundary)
        if len(parts) != 2:
            raise _GmailError(400, "badRequest", "Invalid multipart request with %d mime parts."
                              % len(parts))
        (mh, mbody), (dh, dbody) = parts
        mtype = (mh.get("content-type") or "").split(";")[0].strip().lower()
        if mtype != "application/json":
            raise _GmailError(400, "badRequest", "Invalid multipart request: the first part "
                              "must be application/json metadata.")
        meta = self._parse_json(mbody)
        meta.pop("raw", None)
        dtype = dh.get("content-type") or ""
        if not dtype.split(";")[0].strip().lower().startswith("message/"):
            raise self._media_type_error(dtype)
        if "base64" in (dh.get("content-transfer-encoding") or "").lower():
            try:
                dbody = base64.b64decode(re.sub(rb"\s", b"", dbody), validate=True)
            except (ValueError, binascii.Error):
                raise _GmailError(400, "badRequest", "Invalid base64 in the media part.")
        if len(dbody) > self.max_message_size:
            raise self._too_large()
        return meta, dbody

    @staticmethod
    def _split_multipart(body, boundary):
        """[(headers dict lower-cased, content bytes)] of a multipart body."""
        delim = b"--" + boundary
        data = b"\r\n" + body
        pieces = re.split(b"\r?\n" + re.escape(delim), data)
        parts = []
        for piece in pieces[1:]:
            if piece.startswith(b"--"):
                break
            # The rest of the delimiter line (transport padding), then headers.
            nl = piece.find(b"\n")
            if nl < 0:
                continue
            piece = piece[nl + 1:]
            m = re.search(b"\r?\n\r?\n", piece)
            if piece.startswith(b"\r\n") or piece.startswith(b"\n"):
                head, content = b"", piece[2 if piece.startswith(b"\r\n") else 1:]
            elif m:
                head, content = piece[:m.start()], piece[m.end():]
            else:
                head, content = piece, b""
            headers = {}
            for line in head.decode("latin-1").splitlines():
                k, sep, v = line.partition(":")
                if sep:
                    headers[k.strip().lower()] = v.strip()
            parts.append((headers, content))
        return parts

    def _resumable_start(self, req, tok, user, user_id):
        xct = req.header("X-Upload-Content-Type")
        if xct and not xct.split(";")[0].strip().lower().startswith("message/"):
            raise self._media_type_error(xct)
        total = None
        xcl = req.header("X-Upload-Content-Length")
        if xcl is not None:
            try:
                total = int(xcl)
                if total < 0:
                    raise ValueError
            except ValueError:
                raise _GmailError(400, "badRequest", "Invalid X-Upload-Content-Length header.")
            if total > self.max_message_size:
                raise self._too_large()
        if req.body is None:
            raise _GmailError(400, "badRequest", "Request payload size exceeds the limit: %d "
                              "bytes." % self.raw_request_limit)
        meta = {}
        if req.body.strip():
            if req.content_type() != "application/json":
                raise _GmailError(400, "badRequest", "Invalid JSON payload received. "
                                  "Unexpected token.")
            meta = self._parse_json(req.body)
            meta.pop("raw", None)
        now = time.time()
        s = UploadSession(id="AEnB2U" + b64url(secrets.token_bytes(48)), user=user.email,
                          token=tok, metadata=meta, total=total, created=now,
                          expires_at=now + RESUMABLE_LIFETIME)
        with self._lock:
            self._sessions[s.id] = s
        location = "%s/upload/gmail/v1/users/%s/messages/send?uploadType=resumable&upload_id=%s" \
            % (self.base_url, quote(user_id, safe="@"), s.id)
        return Response(200, b"", [("Location", location), ("X-GUploader-UploadID", s.id),
                                   ("Vary", "Origin"), ("Vary", "X-Origin")])

    def _resumable_put(self, req, delay):
        sid = req.param("upload_id")
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None and s.expires_at <= time.time():
                self._sessions.pop(sid, None)
                s = None
        if s is None:
            raise _GmailError(404, "notFound", "Not Found", detail="Not Found")
        req.log["user"] = s.user
        req.log["service_account"] = s.token.service_account
        with self._slot(_norm(s.user), delay):
            return self._resumable_chunk(req, s)

    def _over_concurrency(self):
        return _GmailError(429, "rateLimitExceeded", CONCURRENT,
                           retry_after=self.throttle_retry_after)

    def _resumable_chunk(self, req, s):
        def progress():
            hdrs = [("X-GUploader-UploadID", s.id)]
            if s.received:
                hdrs.append(("Range", "bytes=0-%d" % (s.received - 1)))
            return Response(308, b"", hdrs)

        if req.body is None:
            with self._lock:
                self._sessions.pop(s.id, None)
            raise self._too_large()
        cr = (req.header("Content-Range") or "").strip()
        with self._lock:
            if self._sessions.get(s.id) is not s:
                raise _GmailError(404, "notFound", "Not Found", detail="Not Found")
            if not cr:
                # The whole message in one PUT.
                s.data = bytearray(req.body)
                if s.total is None:
                    s.total = len(req.body)
            else:
                q = re.match(r"^bytes\s+\*/(\d+|\*)$", cr)
                c = re.match(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$", cr)
                if q:
                    if req.body_len:
                        raise _GmailError(400, "badRequest", "Failed to parse Content-Range "
                                          "header.")
                    if q.group(1) != "*":
                        self._set_total(s, int(q.group(1)))
                elif c:
                    start, end = int(c.group(1)), int(c.group(2))
                    if end < start or end - start + 1 != len(req.body):
                        raise _GmailError(400, "badRequest", "Failed to parse Content-Range "
                                          "header.")
                    if c.group(3) != "*":
                        self._set_total(s, int(c.group(3)))
                    if start > s.received:
                        raise _GmailError(400, "badRequest", "Invalid request. Offset %d is "
                                          "beyond the %d bytes received." % (start, s.received))
                    final = s.total is not None and end + 1 == s.total
                    if (self.enforce_chunk_granularity and not final
                            and len(req.body) % RESUMABLE_CHUNK):
                        raise _GmailError(400, "badRequest", "Invalid request. The chunk size "
                                          "must be a multiple of %d bytes." % RESUMABLE_CHUNK)
                    s.data += req.body[s.received - start:]
                else:
                    raise _GmailError(400, "badRequest", "Failed to parse Content-Range header.")
            if s.total is not None and s.total > self.max_message_size:
                self._sessions.pop(s.id, None)
                raise self._too_large()
            if s.total is not None and s.received > s.total:
                raise _GmailError(400, "badRequest", "Invalid request. The upload is longer "
                                  "than its declared size %d." % s.total)
            if s.total is None or s.received < s.total:
                return progress()
            self._sessions.pop(s.id, None)
            user = self._users.get(s.user.lower())
        if user is None:
            raise _GmailError(400, "failedPrecondition")
        return self._accept(req, s.token, user, bytes(s.data), s.metadata, "resumable")

    @staticmethod
    def _set_total(s, total):
        if s.total is not None and s.total != total:
            raise _GmailError(400, "badRequest", "Invalid request. The total size %d does not "
                              "match the %d bytes declared." % (total, s.total))
        s.total = total

    @staticmethod
    def _recipients(raw):
        """{"to","cc","bcc"} address lists and the From address, from the
        message's header section."""
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            _header_block(raw), headersonly=True)
        out = {}
        for name, key in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
            values = [str(v) for v in msg.get_all(name, [])]
            addrs = []
            for value in values:
                if not value.strip():
                    continue
                # A group with no members ("undisclosed-recipients:;") names nobody.
                if re.fullmatch(r"\s*[^:<>@,]*:\s*;\s*", value):
                    continue
                for disp, a in email.utils.getaddresses([value]):
                    if not a and not disp:
                        continue
                    if not ADDRESS_RE.match(a or ""):
                        raise _GmailError(400, "invalidArgument", "Invalid %s header" % name)
                    a = _norm(a)
                    if a not in addrs:
                        addrs.append(a)
            out[key] = addrs
        frm = email.utils.getaddresses([str(v) for v in msg.get_all("From", [])])
        out["from"] = _norm(frm[0][1]) if frm and frm[0][1] else None
        return out

    def _accept(self, req, tok, user, raw, meta, via):
        if not raw or not raw.strip():
            raise _GmailError(400, "invalidArgument", RAW_REQUIRED)
        if len(raw) > self.max_message_size:
            raise self._too_large()
        addrs = self._recipients(raw)
        everyone = unique(addrs["to"] + addrs["cc"] + addrs["bcc"])
        if not everyone:
            raise _GmailError(400, "invalidArgument", RECIPIENT_REQUIRED)
        if self.max_recipients and len(everyone) > self.max_recipients:
            raise _GmailError(400, "invalidArgument", "Too many recipients: %d (at most %d "
                              "per message)." % (len(everyone), self.max_recipients))
        self._check_daily(user, len(everyone))
        with self._lock:
            self._next_id += 1
            mid = "%016x" % self._next_id
        thread = meta.get("threadId") if isinstance(meta.get("threadId"), str) else mid
        frm = addrs["from"]
        sent_from = frm if frm and (frm == _norm(user.email) or frm in user.aliases) \
            else user.email.lower()
        msg = SentMessage(user=user.email, raw=raw, to=addrs["to"], cc=addrs["cc"],
                          bcc=addrs["bcc"], via=via, time=time.time(),
                          request_id=req.request_id, id=mid, thread_id=thread,
                          service_account=tok.service_account, client_id=tok.client_id,
                          from_header=frm, sent_from=sent_from, metadata=dict(meta))
        self._record(msg)
        return self._gmail_ok(req, {"id": mid, "threadId": thread, "labelIds": ["SENT"]})


# --------------------------------------------------------------------------


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Run the fake Google token endpoint + Gmail API.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--service-account", default="mailbridge@mailbridge-test.iam."
                                                 "gserviceaccount.com")
    ap.add_argument("--key-file", default=None,
                    help="where to write the service account's JSON key file "
                         "(default: a temporary file)")
    ap.add_argument("--user", action="append", default=[],
                    help="Workspace user to send as (repeatable; default relay@example.com)")
    ap.add_argument("--scopes", default=GMAIL_SEND,
                    help="comma-separated scopes granted by domain-wide delegation")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    tmp = None
    with FakeGoogle(port=args.port, verbose=args.verbose) as fake:
        try:
            key = fake.add_service_account(args.service_account)
            users = args.user or ["relay@example.com"]
            for u in users:
                fake.add_user(u)
            fake.grant_delegation(key["client_id"], [s for s in args.scopes.split(",") if s])
            if args.key_file:
                key_path = fake.write_key_file(args.key_file)
            else:
                tmp = tempfile.mkdtemp(prefix="mb-fake-google-key-")
                key_path = fake.write_key_file(Path(tmp) / "service-account.json")
            print("Gmail API:  %s" % fake.base_url)
            print("token URI:  %s" % fake.token_uri)
            print("CA file:    %s" % fake.ca_file)
            print("key file:   %s" % key_path)
            print("client id:  %s (%s)" % (key["client_id"], key["client_email"]))
            print("users:      %s" % ", ".join(users))
            print("crypto:     %s" % CRYPTO_BACKEND)
            print("Ctrl-C stops it.", flush=True)
            run_until_interrupted([(lambda: fake.sent, lambda m: "sent: %s %s -> %s (%d bytes)" % (
                m.via, m.user, ", ".join(m.recipients), m.size))])
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
