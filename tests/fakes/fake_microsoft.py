"""A fake of the Microsoft identity platform token endpoint and of Microsoft
Graph's mail endpoints, over HTTPS on 127.0.0.1, for the end-to-end tests of
the Graph provider and the Entra ID token sources.

It speaks the wire protocol Microsoft documents publicly and the relay
speaks to Microsoft: form-encoded token requests
answered with the identity platform's JSON and AADSTS errors; Graph requests
with Bearer tokens answered with Graph's JSON errors; sendMail with MIME or
JSON; drafts, attachments and upload sessions for large messages. One server
serves both: the relay's login_endpoint and graph_endpoint are both
`base_url`, the paths tell them apart (`/{tenant}/oauth2/v2.0/token`,
`/v1.0/...`, and the upload URLs `/api/v2.0/Users('...')/...`).

Tests drive it in-process:

    fake = FakeMicrosoft().start()          # or FakeMicrosoft(ca=TestCA())
    fake.add_app("contoso.example", "app-id", secret="s3cret")
    fake.add_user("contoso.example", "relay@contoso.example")
    ... run the relay with login/graph endpoint fake.base_url, CA fake.ca_file
    [msg] = fake.wait_sent(1)
    msg.recipients, msg.mime, msg.attachments
    fake.stop()

Faults (fail_next, delay, reset_next, set_token_error), limits (per app and
mailbox concurrency, per mailbox message rate, message size) and a request
log without secrets let tests check retries, throttling and single flight.

Thread-safe: the server answers on one thread per connection; all state is
behind one lock, and sleeps happen outside it.
"""

import base64
import binascii
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote_plus

try:
    from .fake_base import run_until_interrupted
    from .https_fake import Fault, HttpsFake, Request, Response, unique
    from .https_fake import LogEntry as BaseLogEntry
    from .test_ca import b64url, cert_der, run_openssl, split_jwt, thumbprints, verify
except ImportError:
    from fake_base import run_until_interrupted
    from https_fake import Fault, HttpsFake, Request, Response, unique
    from https_fake import LogEntry as BaseLogEntry
    from test_ca import b64url, cert_der, run_openssl, split_jwt, thumbprints, verify

MB = 1024 * 1024
REQUEST_LIMIT = 4 * MB            # Graph refuses request bodies above this
ATTACHMENT_POST_LIMIT = 3 * MB    # attachments POSTed in one piece
UPLOAD_SESSION_MIN = 3 * MB       # createUploadSession refuses smaller files
UPLOAD_SESSION_MAX = 150 * MB
UPLOAD_CHUNK_LIMIT = 4 * MB       # bytes per PUT to an upload URL
DEFAULT_MAX_MESSAGE = 35 * MB     # a tenant's default maximum message size

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OIDC_SCOPES = {"openid", "profile", "email", "offline_access"}

GRAPH_JSON = ("application/json;odata.metadata=minimal;odata.streaming=true;"
              "IEEE754Compatible=false;charset=utf-8")

# AADSTS code -> (HTTP status, error, description) for the errors the fake
# produces itself and for set_token_error().
AADSTS = {
    7000215: (401, "invalid_client", "Invalid client secret provided. Ensure the secret being "
              "sent in the request is the client secret value, not the client secret ID, for a "
              "secret added to app '{app}'."),
    7000222: (401, "invalid_client", "The provided client secret keys for app '{app}' are "
              "expired. Visit the Azure portal to create new keys for your app: "
              "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
              "added security: https://aka.ms/certCreds."),
    700016: (400, "unauthorized_client", "Application with identifier '{app}' was not found in "
             "the directory '{tenant}'. This can happen if the application has not been "
             "installed by the administrator of the tenant or consented to by any user in the "
             "tenant. You may have sent your authentication request to the wrong tenant."),
    7000229: (401, "invalid_client", "The client application {app} is missing service "
              "principal in the tenant {tenant}. See instructions here: "
              "https://go.microsoft.com/fwlink/?linkid=2225119"),
    90002: (400, "invalid_request", "Tenant '{tenant}' not found. Check to make sure you have "
            "the correct tenant ID and are signing into the correct cloud. Check with your "
            "subscription administrator, this may happen if there are no active subscriptions "
            "for the tenant."),
    7000218: (401, "invalid_client", "The request body must contain the following parameter: "
              "'client_assertion' or 'client_secret'."),
    700027: (401, "invalid_client", "Client assertion failed signature validation."),
    700023: (401, "invalid_client", "Client assertion audience claim does not match Realm "
             "issuer. Review the documentation at "
             "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."),
    700021: (401, "invalid_client", "Client assertion application identifier doesn't match "
             "'client_id' parameter. Review the documentation at "
             "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."),
    700024: (400, "invalid_client", "Client assertion is not within its valid time range."),
    500133: (400, "invalid_grant", "Assertion is not within its valid time range."),
    50027: (400, "invalid_request", "JWT token is invalid or malformed."),
    900144: (400, "invalid_request", "The request body must contain the following parameter: "
             "'{param}'."),
    900561: (400, "invalid_request", "The endpoint only accepts POST requests. Received a {method} "
             "request."),
    70003: (400, "unsupported_grant_type", "The app requested an unsupported grant type "
            "'{grant}'."),
    1002012: (400, "invalid_scope", "The provided value for scope {scope} is not valid. Client "
              "credential flows must have a scope value with /.default suffixed to the resource "
              "identifier (application ID URI)."),
    70011: (400, "invalid_scope", "The provided request must include a 'scope' input parameter. "
            "The provided value for the input parameter 'scope' is not valid."),
    65001: (400, "invalid_grant", "The user or administrator has not consented to use the "
            "application with ID '{app}'. Send an interactive authorization request for this "
            "user and resource."),
    50034: (400, "invalid_grant", "The user account {{EUII Hidden}} does not exist in the "
            "{tenant} directory. To sign into this application, the account must be added to "
            "the directory."),
    50126: (400, "invalid_grant", "Error validating credentials due to invalid username or "
            "password."),
    50076: (400, "invalid_grant", "Due to a configuration change made by your administrator, "
            "or because you moved to a new location, you must use multi-factor authentication "
            "to access '" + GRAPH_APP_ID + "'."),
    50079: (400, "invalid_grant", "Due to a configuration change made by your administrator, "
            "or because you moved to a new location, you must enroll in multi-factor "
            "authentication to access '" + GRAPH_APP_ID + "'."),
    70008: (400, "invalid_grant", "The provided authorization code or refresh token has expired "
            "due to inactivity. Send a new interactive authorization request for this user and "
            "resource."),
    700082: (400, "invalid_grant", "The refresh token has expired due to inactivity. The token "
             "was issued on {issued} and was inactive for 90.00:00:00."),
    50173: (400, "invalid_grant", "The provided grant has expired due to it being revoked, a "
            "fresh auth token is needed. The user might have changed or reset their password."),
    9002313: (400, "invalid_grant", "Invalid request. Request is malformed or invalid."),
    70000: (400, "invalid_grant", "Provided grant is invalid or malformed."),
    70016: (400, "authorization_pending", "OAuth 2.0 device flow error. Authorization is "
            "pending. Continue polling."),
    70020: (400, "expired_token", "The provided value for the input parameter 'device_code' is "
            "not valid. This device code has expired."),
    70019: (400, "authorization_declined", "Verification code expired or the user declined."),
    50033: (503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
    90024: (503, "temporarily_unavailable", "RequestBudgetExceededError - A transient error has "
            "occurred. Please try again."),
}

GRAPH_DEFAULT_CODES = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ResourceNotFound", "Resource could not be discovered."),
    409: ("ErrorIrresolvableConflict", "The send or update operation could not be performed "
          "because the change key passed in the request does not match the current change key "
          "for the item."),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("InternalServerError", "An internal server error occurred. The operation failed."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "Service unavailable."),
    504: ("GatewayTimeout", "The gateway did not receive a response from the backend in time."),
}

ACCESS_DENIED = "Access is denied. Check credentials and try again."
SEND_AS_DENIED = ("The user account which was used to submit this request does not have the "
                  "right to send mail on behalf of the specified sending account., Cannot "
                  "submit message.")
SIZE_EXCEEDED = ("The message exceeds the maximum supported size., Cannot save changes made to "
                 "an item to store.")
TOO_LARGE_MESSAGE = "The maximum request length supported is 4MB."
NO_RECIPIENTS = ("At least one recipient is not valid., A message can't be sent because it "
                 "contains no recipients.")
BAD_JSON = ("Unable to read JSON request payload. Please ensure Content-Type header is set and "
            "payload is of valid JSON format.")
ADDRESS_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


def _guid():
    return str(uuid.uuid4())


def _aad_timestamp(ts=None):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _iso(ts):
    """ISO 8601 UTC with seven fractional digits, as Exchange writes it."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _item_id():
    """An Exchange-looking item id (base64url with a trailing '=')."""
    return "AAMkAD" + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode() + "="


def _norm(addr):
    return (addr or "").strip().lower()


# --------------------------------------------------------------------------
# State records (attributes are public: tests read them)


@dataclass
class Secret:
    value: str
    expired: bool = False
    end: float = 0.0
    start: float = 0.0
    key_id: str = field(default_factory=_guid)
    display_name: str = "mailbridge"

    def is_expired(self, now):
        return self.expired or self.end <= now


@dataclass
class Certificate:
    pem: str
    der: bytes
    x5t_s256: str
    x5t: str
    pubkey_file: Path
    not_after: float
    subject: str
    key_id: str = field(default_factory=_guid)


@dataclass
class App:
    tenant: str
    client_id: str
    roles: set
    delegated: set
    service_principal: bool = True
    public_client: bool = True
    display_name: str = "Mailbridge"
    object_id: str = field(default_factory=_guid)
    secrets: list = field(default_factory=list)
    certs: list = field(default_factory=list)
    allowed_mailboxes: object = None      # application access policy: None = all


@dataclass
class User:
    tenant: str
    upn: str
    password: object = None
    mfa: bool = False
    mailbox: bool = True
    aliases: set = field(default_factory=set)
    display_name: str = ""
    object_id: str = field(default_factory=_guid)


@dataclass
class Tenant:
    id: str
    aliases: set
    apps: dict = field(default_factory=dict)     # client_id -> App
    users: dict = field(default_factory=dict)    # upn (lower) -> User


@dataclass
class Token:
    """An access token the fake issued."""
    value: str
    tenant: str
    client_id: str
    roles: frozenset          # app-only: application permissions
    scopes: frozenset         # delegated: scp
    user: object              # UPN for delegated tokens, None for app-only
    resource: str
    issued_at: float
    expires_at: float
    grant_type: str

    @property
    def app_only(self):
        return self.user is None

    def permissions(self):
        return self.roles if self.app_only else self.scopes


@dataclass
class RefreshToken:
    value: str
    tenant: str
    client_id: str
    user: str
    scopes: tuple
    issued_at: float
    expires_at: float
    mfa_done: bool = False
    revoked: bool = False
    replaced: bool = False
    uses: int = 0


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    tenant: str
    client_id: str
    scopes: tuple
    expires_at: float
    state: str = "pending"     # pending | approved | declined | redeemed
    user: object = None


@dataclass
class Attachment:
    """A file attachment, its bytes in a temporary file."""
    id: str
    name: str
    content_type: str
    is_inline: bool
    content_id: object
    size: int
    sha256: str
    path: Path
    via: str = "post"          # post | upload | json

    @property
    def data(self):
        return Path(self.path).read_bytes()


@dataclass
class Draft:
    id: str
    tenant: str
    mailbox: str
    client_id: str
    user: object
    mime: object               # bytes when created from MIME
    message: object            # dict when created from JSON
    created: float
    attachments: list = field(default_factory=list)
    extended: dict = field(default_factory=dict)   # singleValueExtendedProperties, id lower-cased


@dataclass
class UploadSession:
    id: str
    draft_id: str
    tenant: str
    mailbox: str
    user_object_id: str
    client_id: str
    name: str
    content_type: str
    size: int
    is_inline: bool
    content_id: object
    authtoken: str
    expires_at: float
    path: Path
    received: int = 0


@dataclass
class SentMessage:
    """A message the fake accepted for delivery."""
    mailbox: str               # the sending mailbox (path user, as registered)
    kind: str                  # "mime" (sendMail MIME), "json" (sendMail JSON), "draft" (send)
    to: list
    cc: list
    bcc: list
    save_to_sent_items: bool
    time: float
    tenant: str
    client_id: str
    user: object               # UPN for delegated tokens, None for app-only
    mime: object = None        # raw MIME bytes (kind mime, or a draft made from MIME)
    message: object = None     # JSON message object (kind json, or a JSON draft)
    attachments: list = field(default_factory=list)
    message_id: object = None  # Graph id of the draft
    request_id: str = ""

    @property
    def recipients(self):
        """To, Cc and Bcc together, lower-cased, each once."""
        return unique(self.to + self.cc + self.bcc)

    @property
    def email(self):
        """The MIME parsed as an email.message.EmailMessage (None for JSON)."""
        if self.mime is None:
            return None
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.mime)

    @property
    def subject(self):
        if self.mime is not None:
            return self.email.get("Subject")
        return (self.message or {}).get("subject")

    def assembled(self):
        """The whole message as MIME bytes, attachments included (for drafts
        the fake builds what Exchange would send; for kind mime the input)."""
        if self.kind == "mime":
            return self.mime
        if self.mime is not None:
            msg = self.email
        else:
            msg = _message_from_json(self.message or {})
        for att in self.attachments:
            maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
            kwargs = {"filename": att.name,
                      "disposition": "inline" if att.is_inline else "attachment"}
            if att.content_id:
                cid = att.content_id
                kwargs["cid"] = cid if cid.startswith("<") else "<%s>" % cid
            msg.add_attachment(att.data, maintype or "application", subtype or "octet-stream",
                               **kwargs)
        return msg.as_bytes(policy=email.policy.SMTP)


@dataclass
class LogEntry(BaseLogEntry):
    """One request as the fake saw it; no secrets (no query strings, no
    bodies). endpoint: token | graph | upload | other."""
    grant_type: object = None
    client_id: object = None
    mailbox: object = None
    error: object = None       # AADSTS code or Graph error code
    content_type: object = None
    body_length: int = 0
    client_request_id: object = None


def _message_from_json(message):
    msg = email.message.EmailMessage(policy=email.policy.default)

    def addrs(key):
        out = []
        for r in message.get(key) or []:
            ea = (r or {}).get("emailAddress") or {}
            out.append(email.utils.formataddr((ea.get("name") or "", ea.get("address") or "")))
        return ", ".join(out)

    frm = (message.get("from") or {}).get("emailAddress")
    if frm:
        msg["From"] = email.utils.formataddr((frm.get("name") or "", frm.get("address") or ""))
    for key, header in (("toRecipients", "To"), ("ccRecipients", "Cc"),
                        ("bccRecipients", "Bcc")):
        value = addrs(key)
        if value:
            msg[header] = value
    if message.get("subject") is not None:
        msg["Subject"] = message["subject"]
    for h in message.get("internetMessageHeaders") or []:
        msg[h.get("name")] = h.get("value", "")
    body = message.get("body") or {}
    content = body.get("content") or ""
    if str(body.get("contentType", "text")).lower() == "html":
        msg.set_content(content, subtype="html")
    else:
        msg.set_content(content)
    return msg


# --------------------------------------------------------------------------
# Requests and responses


class _Request(Request):
    def __init__(self, *args):
        super().__init__(*args)
        self.request_id = _guid()
        self.client_request_id = self.headers.get("client-request-id")


class _TokenError(Exception):
    def __init__(self, code, status=None, error=None, description=None, **fmt):
        super().__init__(code)
        st, err, text = AADSTS.get(code, (400, "invalid_request", "Error."))
        self.code = code
        self.status = status or st
        self.error = error or err
        if description is None:
            try:
                description = text.format(**fmt)
            except (KeyError, IndexError):
                description = text
        self.description = description


class _GraphError(Exception):
    def __init__(self, status, code=None, message=None, retry_after=None, inner=True,
                 headers=None):
        super().__init__(code)
        dcode, dmsg = GRAPH_DEFAULT_CODES.get(status, ("UnknownError", "Error."))
        self.status = status
        self.code = code or dcode
        self.message = message if message is not None else dmsg
        self.retry_after = retry_after
        self.inner = inner
        self.headers = headers or []


@dataclass
class _Fault(Fault):
    code: object = None        # Graph error code, or AADSTS code (int) / error (str) on token


# --------------------------------------------------------------------------
# The fake


class FakeMicrosoft(HttpsFake):
    """Token endpoint + Graph mail over HTTPS on 127.0.0.1 (see module doc)."""

    name = "fake_microsoft"
    server_version = "FakeMicrosoft/1.0"
    api = "graph"
    body_limit = REQUEST_LIMIT
    length_required_methods = ("POST", "PUT", "PATCH")
    log_fields = ("grant_type", "client_id", "mailbox", "error")
    request_class = _Request
    fault_class = _Fault
    log_entry_class = LogEntry

    def __init__(self, ca=None, host="127.0.0.1", port=0, verbose=False):
        super().__init__(ca, host, port, verbose)
        self.workdir = Path(tempfile.mkdtemp(prefix="mb-fake-ms-"))

        # settings
        self.token_lifetime = 3599
        self.refresh_token_lifetime = 90 * 86400
        self.strict_refresh_rotation = False
        self.clock_skew = 300
        self.assertion_max_lifetime = 600
        self.assertion_time_error = 700024
        self.device_code_interval = 5
        self.device_code_lifetime = 900
        self.upload_session_lifetime = 900
        self.max_message_size = DEFAULT_MAX_MESSAGE
        self.request_too_large_status = 400
        self.message_size_status = 413
        self.concurrency_limit = 4
        self.rate_limit = 30
        self.throttle_retry_after = 1
        self.enforce_send_as = False
        self.graph_resources = {
            "https://graph.microsoft.com", "https://graph.microsoft.us",
            "https://dod-graph.microsoft.us", "https://microsoftgraph.chinacloudapi.cn",
            "https://canary.graph.microsoft.com", GRAPH_APP_ID}

        # state
        self._tenants = {}            # alias (lower) -> Tenant
        self._tokens = {}
        self._refresh = {}
        self._device = {}             # device_code -> DeviceCode
        self._auto_device_user = None
        self._drafts = {}
        self._send_as = {}            # mailbox -> set of grantees
        self._send_as_denied = set()
        self._sends = {}              # mailbox -> deque of times
        self.token_requests = Counter()   # grant kind -> requests (all outcomes)
        self.token_issued = Counter()     # grant kind -> tokens issued
        # token_events: dicts with grant, client_id, tenant, ok, error, credential

    # ---- lifecycle ---------------------------------------------------------

    def stop(self):
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def token_url(self, tenant):
        return "%s/%s/oauth2/v2.0/token" % (self.base_url, tenant)

    # ---- registration ------------------------------------------------------

    def add_tenant(self, tenant, aliases=()):
        """Registers a tenant (id or domain) with optional aliases (its other
        names: a GUID and verified domains)."""
        with self._lock:
            t = self._tenants.get(tenant.lower())
            if t is None:
                t = Tenant(id=tenant, aliases={tenant.lower()})
                self._tenants[tenant.lower()] = t
            for a in aliases:
                t.aliases.add(a.lower())
                self._tenants[a.lower()] = t
            return t

    def add_app(self, tenant, client_id, secret=None, cert_pem=None, roles=("Mail.Send",),
                secret_expired=False, service_principal=True, public_client=True,
                delegated=("Mail.Send", "Mail.ReadWrite", "User.Read", "offline_access",
                           "openid", "profile", "email"),
                secret_end=None, display_name="Mailbridge"):
        """Registers an app (and its service principal) in a tenant. `roles`:
        application permissions with admin consent (the token's roles claim);
        `delegated`: consented delegated permissions. `cert_pem`: PEM text,
        bytes or a file path of a certificate credential."""
        t = self.add_tenant(tenant)
        with self._lock:
            app = t.apps.get(client_id)
            if app is None:
                app = App(tenant=t.id, client_id=client_id, roles=set(roles),
                          delegated=set(delegated), display_name=display_name)
                t.apps[client_id] = app
            else:
                app.roles = set(roles)
                app.delegated = set(delegated)
            app.service_principal = service_principal
            app.public_client = public_client
        if secret is not None:
            self.add_secret(tenant, client_id, secret, expired=secret_expired, end=secret_end)
        if cert_pem is not None:
            self.add_certificate(tenant, client_id, cert_pem)
        return app

    def _app(self, tenant, client_id):
        t = self._tenants.get(tenant.lower())
        if t is None or client_id not in t.apps:
            raise KeyError("no app %s in tenant %s" % (client_id, tenant))
        return t.apps[client_id]

    def add_secret(self, tenant, client_id, secret, expired=False, end=None,
                   display_name="mailbridge"):
        """Adds a client secret. `end`: its endDateTime (epoch seconds);
        default 180 days ahead, or a day ago when `expired`."""
        now = time.time()
        if end is None:
            end = now - 86400 if expired else now + 180 * 86400
        with self._lock:
            app = self._app(tenant, client_id)
            app.secrets.append(Secret(value=secret, expired=expired, end=end,
                                      start=min(now, end) - 86400, display_name=display_name))

    def add_certificate(self, tenant, client_id, cert_pem):
        if isinstance(cert_pem, Path) or (isinstance(cert_pem, str)
                                          and "-----BEGIN" not in cert_pem):
            cert_pem = Path(cert_pem).read_text()
        if isinstance(cert_pem, bytes):
            cert_pem = cert_pem.decode("ascii")
        der = cert_der(cert_pem)
        s256, s1 = thumbprints(der)
        pem_file = self.workdir / ("cert-%s.pem" % s256)
        pem_file.write_text(cert_pem)
        pub = self.workdir / ("pub-%s.pem" % s256)
        pub.write_bytes(run_openssl("x509", "-in", pem_file, "-pubkey", "-noout"))
        end = run_openssl("x509", "-in", pem_file, "-enddate", "-noout").decode().strip()
        subject = run_openssl("x509", "-in", pem_file, "-subject", "-noout").decode().strip()
        not_after = ssl.cert_time_to_seconds(end.split("=", 1)[1])
        cert = Certificate(pem=cert_pem, der=der, x5t_s256=s256, x5t=s1, pubkey_file=pub,
                           not_after=not_after, subject=subject.split("=", 1)[-1].strip())
        with self._lock:
            self._app(tenant, client_id).certs.append(cert)
        return cert

    def set_app_roles(self, tenant, client_id, roles):
        """Changes the app's application permissions (tokens issued later)."""
        with self._lock:
            self._app(tenant, client_id).roles = set(roles)

    def set_access_policy(self, tenant, client_id, mailboxes=None):
        """An application access policy: app-only tokens of this app may
        reach only these mailboxes (None lifts it)."""
        with self._lock:
            self._app(tenant, client_id).allowed_mailboxes = (
                None if mailboxes is None else {_norm(m) for m in mailboxes})

    def add_user(self, tenant, upn, password=None, mfa=False, mailbox=True, aliases=(),
                 display_name=None):
        """Registers (or updates) a user. mailbox=False: no Exchange Online
        mailbox (Graph answers MailboxNotEnabledForRESTAPI). `aliases`: other
        addresses of the mailbox (allowed as From when send-as is enforced)."""
        t = self.add_tenant(tenant)
        with self._lock:
            u = t.users.get(upn.lower())
            if u is None:
                u = User(tenant=t.id, upn=upn)
                t.users[upn.lower()] = u
            u.password = password
            u.mfa = mfa
            u.mailbox = mailbox
            u.aliases = {_norm(a) for a in aliases}
            u.display_name = display_name or upn.split("@")[0]
            return u

    def grant_send_as(self, mailbox, grantee):
        """Lets `grantee` act for `mailbox`: an address allowed in From when
        send-as is enforced, or a user whose delegated token may use the
        mailbox."""
        with self._lock:
            self._send_as.setdefault(_norm(mailbox), set()).add(_norm(grantee))

    def deny_send_as(self, mailbox, denied=True):
        """Every send from this mailbox fails with 403 ErrorSendAsDenied."""
        with self._lock:
            (self._send_as_denied.add if denied else self._send_as_denied.discard)(_norm(mailbox))

    def set_enforce_send_as(self, on=True):
        """When on, a From address other than the mailbox, its aliases or a
        grant_send_as() grantee gives 403 ErrorSendAsDenied (as Exchange
        does); off by default."""
        self.enforce_send_as = on

    def set_max_message_size(self, nbytes):
        self.max_message_size = nbytes

    def set_concurrency_limit(self, n):
        """Concurrent Graph requests per (app, mailbox); 0 = unlimited."""
        self.concurrency_limit = n

    def set_rate_limit(self, per_minute):
        """Messages per mailbox per minute; 0 = unlimited."""
        self.rate_limit = per_minute

    def set_token_lifetime(self, seconds):
        self.token_lifetime = seconds

    # ---- tokens ------------------------------------------------------------

    def expire_tokens(self):
        """Every access token issued so far expires now."""
        with self._lock:
            now = time.time()
            for t in self._tokens.values():
                t.expires_at = min(t.expires_at, now - 1)

    def revoke_tokens(self):
        """Forgets every access token (Graph then treats them as invalid)."""
        with self._lock:
            self._tokens.clear()

    def expire_refresh_tokens(self):
        with self._lock:
            for r in self._refresh.values():
                r.expires_at = min(r.expires_at, time.time() - 1)

    def revoke_refresh_tokens(self):
        with self._lock:
            for r in self._refresh.values():
                r.revoked = True

    def issue_refresh_token(self, tenant, client_id, upn,
                            scope="https://graph.microsoft.com/Mail.Send offline_access",
                            lifetime=None, mfa_done=True):
        """A refresh token as if the user had signed in interactively."""
        with self._lock:
            t = self._tenants[tenant.lower()]
            return self._new_refresh(t, client_id, t.users[upn.lower()].upn, tuple(scope.split()),
                                     mfa_done, lifetime)

    @property
    def tokens(self):
        return self._snapshot(self._tokens.values())

    @property
    def refresh_tokens(self):
        return self._snapshot(self._refresh.values())

    def token_count(self, grant_type=None, ok=None):
        """Token requests seen, optionally of one grant kind
        (client_credentials, password, refresh_token, device_code) and only
        successful (ok=True) or failed (ok=False) ones."""
        with self._lock:
            return sum(1 for e in self.token_events
                       if (grant_type is None or e["grant"] == grant_type)
                       and (ok is None or e["ok"] == ok))

    # ---- device code -------------------------------------------------------

    def approve_device_code(self, upn, user_code=None):
        """Completes the browser step of a device code sign-in (the latest
        pending one unless `user_code` names it)."""
        with self._lock:
            dc = self._find_device(user_code)
            dc.state = "approved"
            dc.user = upn

    def decline_device_code(self, user_code=None):
        with self._lock:
            self._find_device(user_code).state = "declined"

    def auto_approve_device_codes(self, upn):
        """Device codes requested from now on are approved at once for `upn`
        (None turns it off)."""
        self._auto_device_user = upn

    def _find_device(self, user_code):
        pend = [d for d in self._device.values()
                if d.state == "pending" and (user_code is None or d.user_code == user_code)]
        if not pend:
            raise KeyError("no pending device code")
        return pend[-1]

    @property
    def device_codes(self):
        return self._snapshot(self._device.values())

    # ---- faults ------------------------------------------------------------

    def fail_next(self, n=1, status=503, code=None, message=None, retry_after=None,
                  path_contains=None, endpoint=None, method=None):
        """The next `n` matching requests get `status` with a Graph error body
        (or an identity platform error body on the token endpoint). By
        default only Graph requests (API and upload URLs) match; with
        `path_contains` any request whose path contains it; `endpoint`:
        graph | token | upload | any."""
        self._add_fault("fail", n, endpoint, path_contains, method, status=status, code=code,
                        message=message, retry_after=retry_after)

    def delay(self, seconds, n=None, path_contains=None, endpoint=None, method=None):
        """Graph answers (by default) `seconds` later, for the next `n`
        requests or until delay(0). The time counts against the concurrency
        limit, as a slow backend would."""
        self._set_delay(seconds, n, endpoint, path_contains, method)

    def reset_next(self, n=1, path_contains=None, endpoint=None, method=None,
                   after_processing=False):
        """The next `n` matching requests are read and then the connection is
        reset without an answer. after_processing=True: the request takes
        effect first (a sendMail is accepted and recorded), as when an answer
        is lost on the way back."""
        self._add_fault("reset", n, endpoint, path_contains, method,
                        after_processing=after_processing)

    def set_token_error(self, code, status=None, error=None, description=None, n=None,
                        grant_type=None):
        """Token requests fail with AADSTS `code` (status and error from the
        table unless given) for the next `n` requests (None: until
        clear_token_error()); optionally only for one grant kind."""
        self._force_token_error(n, code=code, status=status, error=error,
                                description=description, grant=grant_type)

    # ---- records -----------------------------------------------------------

    @property
    def drafts(self):
        return self._snapshot(self._drafts, dict)

    def clear_records(self):
        """Forgets sent messages, the request log and the token counters."""
        with self._lock:
            super().clear_records()
            self.token_requests.clear()
            self.token_issued.clear()

    # ---- dispatch ----------------------------------------------------------

    def _classify(self, path):
        if path.startswith("/v1.0/") or path.startswith("/beta/") or path in ("/v1.0", "/beta"):
            return "graph"
        if path.startswith("/api/v2.0/"):
            return "upload"
        if re.match(r"^/[^/]+/(oauth2/v2\.0/|v2\.0/\.well-known/)", path):
            return "token"
        return "other"

    def _new_log_entry(self, h, method, path, endpoint):
        entry = super()._new_log_entry(h, method, path, endpoint)
        entry.client_request_id = h.headers.get("client-request-id")
        return entry

    def _length_required(self, req):
        # IIS in front of Graph wants a length (or chunks) on every POST.
        return self._graph_response(req, _GraphError(411, "LengthRequired", "Length Required"))

    def _not_found(self, req):
        return self._graph_response(req, _GraphError(
            404, "ResourceNotFound", "Resource not found for the segment '%s'."
            % req.path.strip("/").split("/")[0]))

    def _fault_response(self, req, fault):
        req.log["error"] = fault.code or "injected"
        if req.endpoint == "token":
            code = fault.code if isinstance(fault.code, int) else 50033
            err = _TokenError(code, status=fault.status,
                              error=fault.code if isinstance(fault.code, str) else None,
                              description=fault.message)
            resp = self._token_error_response(req, err)
            if fault.retry_after is not None:
                resp.headers.append(("Retry-After", str(fault.retry_after)))
            return resp
        return self._graph_response(req, _GraphError(fault.status, fault.code, fault.message,
                                                     retry_after=fault.retry_after))

    # ---- token endpoint ----------------------------------------------------

    def _token_endpoint(self, req):
        m = re.match(r"^/([^/]+)/(oauth2/v2\.0/(token|devicecode)|v2\.0/\.well-known/"
                     r"openid-configuration)$", req.path)
        if not m:
            return self._json(404, {"error": "not_found"})
        tenant_name = m.group(1)
        if m.group(2).startswith("v2.0"):
            return self._openid_config(req, tenant_name)
        try:
            if req.method != "POST":
                raise _TokenError(900561, method=req.method)
            form = {}
            if req.content_type() == "application/x-www-form-urlencoded" and req.body:
                for k, v in parse_qs(req.body.decode("utf-8", "replace"),
                                     keep_blank_values=True).items():
                    form[k] = v[0]
            if m.group(3) == "devicecode":
                return self._devicecode(req, tenant_name, form)
            return self._token(req, tenant_name, form)
        except _TokenError as e:
            return self._token_error_response(req, e)

    def _openid_config(self, req, tenant_name):
        with self._lock:
            t = self._tenants.get(tenant_name.lower())
        if t is None and tenant_name.lower() not in ("common", "organizations"):
            return self._token_error_response(req, _TokenError(90002, tenant=tenant_name))
        tid = t.id if t else "{tenantid}"
        base = "%s/%s" % (self.base_url, tenant_name)
        return self._json(200, {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
            "authorization_endpoint": base + "/oauth2/v2.0/authorize",
            "issuer": "%s/%s/v2.0" % (self.base_url, tid),
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU"})

    def _token(self, req, tenant_name, form):
        grant = form.get("grant_type", "")
        kind = "device_code" if grant == DEVICE_GRANT else grant
        req.log["grant_type"] = kind or None
        basic_id, basic_secret = self._basic_auth(req)
        client_id = form.get("client_id") or basic_id
        req.log["client_id"] = client_id
        with self._lock:
            self.token_requests[kind or "(none)"] += 1
        event = {"grant": kind, "client_id": client_id, "tenant": tenant_name, "ok": False,
                 "error": None, "credential": None, "time": time.time()}
        try:
            forced = self._take_token_error(kind)
            if forced:
                raise _TokenError(forced["code"], status=forced["status"],
                                  error=forced["error"], description=forced["description"],
                                  app=client_id, tenant=tenant_name, param="", scope="",
                                  grant=grant, method=req.method, issued="")
            if not grant:
                raise _TokenError(900144, param="grant_type")
            if kind not in ("client_credentials", "password", "refresh_token", "device_code"):
                raise _TokenError(70003, grant=grant)
            tenant = self._find_tenant(tenant_name, form, client_id, kind)
            if not client_id:
                raise _TokenError(900144, param="client_id")
            with self._lock:
                app = tenant.apps.get(client_id)
            if app is None:
                raise _TokenError(700016, app=client_id, tenant=tenant.id)
            if not app.service_principal:
                raise _TokenError(7000229, app=client_id, tenant=tenant.id)
            cred = self._client_auth(req, tenant, tenant_name, app, form, basic_id, basic_secret,
                                     required=(kind == "client_credentials"
                                               or not app.public_client))
            event["credential"] = cred
            if kind == "client_credentials":
                resp = self._grant_client_credentials(req, tenant, app, form)
            elif kind == "password":
                resp = self._grant_password(req, tenant, app, form)
            elif kind == "refresh_token":
                resp = self._grant_refresh(req, tenant, app, form)
            else:
                resp = self._grant_device(req, tenant, app, form)
            event["ok"] = True
            with self._lock:
                self.token_issued[kind] += 1
            return resp
        except _TokenError as e:
            event["error"] = e.code
            raise
        finally:
            with self._lock:
                self.token_events.append(event)

    def _find_tenant(self, tenant_name, form, client_id, kind):
        with self._lock:
            t = self._tenants.get(tenant_name.lower())
            if t is not None:
                return t
            if tenant_name.lower() in ("common", "organizations"):
                if kind == "password" and form.get("username"):
                    for cand in set(self._tenants.values()):
                        if form["username"].lower() in cand.users:
                            return cand
                for cand in set(self._tenants.values()):
                    if client_id in cand.apps:
                        return cand
        raise _TokenError(90002, tenant=tenant_name)

    @staticmethod
    def _basic_auth(req):
        auth = req.header("Authorization") or ""
        if not auth.lower().startswith("basic "):
            return None, None
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _TokenError(7000218)
        cid, _, sec = raw.partition(":")
        # RFC 6749 section 2.3.1: both are form-encoded before base64.
        return unquote_plus(cid), unquote_plus(sec)

    def _client_auth(self, req, tenant, tenant_name, app, form, basic_id, basic_secret,
                     required):
        """Checks the client credentials sent; returns their kind or None."""
        used = None
        if basic_id is not None:
            if basic_id != app.client_id:
                raise _TokenError(700016, app=basic_id, tenant=tenant.id)
            self._check_secret(app, basic_secret)
            used = "basic"
        if "client_secret" in form:
            self._check_secret(app, form["client_secret"])
            used = used or "secret"
        if "client_assertion" in form or "client_assertion_type" in form:
            if form.get("client_assertion_type") != JWT_BEARER:
                raise _TokenError(900144, param="client_assertion_type")
            if not form.get("client_assertion"):
                raise _TokenError(900144, param="client_assertion")
            self._check_assertion(req, tenant, tenant_name, app, form["client_assertion"])
            used = "assertion"
        if used is None and required:
            raise _TokenError(7000218)
        return used

    def _check_secret(self, app, value):
        now = time.time()
        with self._lock:
            secrets_ = list(app.secrets)
        for s in secrets_:
            if hmac.compare_digest(s.value.encode(), (value or "").encode()):
                if s.is_expired(now):
                    raise _TokenError(7000222, app=app.client_id)
                return
        raise _TokenError(7000215, app=app.client_id)

    def _check_assertion(self, req, tenant, tenant_name, app, jwt):
        try:
            header, claims, signing_input, signature = split_jwt(jwt)
        except ValueError:
            raise _TokenError(50027)
        alg = header.get("alg")
        if alg not in ("PS256", "RS256"):
            raise _TokenError(700027, description=(
                "Client assertion contains an invalid signature. [Reason - The signing "
                "algorithm '%s' is not supported.]" % alg))
        with self._lock:
            certs = list(app.certs)
        cert = None
        if header.get("x5t#S256"):
            cert = next((c for c in certs if c.x5t_s256 == header["x5t#S256"]), None)
        elif header.get("x5t"):
            cert = next((c for c in certs if c.x5t == header["x5t"]), None)
        if cert is None:
            raise _TokenError(700027, description=(
                "The certificate with identifier used to sign the client assertion is not "
                "registered on application. [Reason - The key was not found., Thumbprint of key "
                "used by client: '%s']" % (header.get("x5t#S256") or header.get("x5t"))))
        if not verify(cert.pubkey_file, signing_input, signature, alg):
            raise _TokenError(700027, description=(
                "Client assertion contains an invalid signature. [Reason - The provided "
                "signature value did not match the expected signature value.]"))
        accepted = {"%s/%s/oauth2/v2.0/token" % (self.base_url, a) for a in tenant.aliases}
        accepted.add(self.token_url(tenant_name))
        if claims.get("aud") not in accepted:
            raise _TokenError(700023)
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise _TokenError(700021)
        if not claims.get("jti"):
            raise _TokenError(50027, description="JWT token is invalid or malformed. "
                              "[Reason - the 'jti' claim is missing.]")
        now = time.time()
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", claims.get("iat", now)))
        except (KeyError, TypeError, ValueError):
            raise _TokenError(50027)
        if (nbf > now + self.clock_skew or exp <= now
                or exp - nbf > self.assertion_max_lifetime + self.clock_skew):
            raise _TokenError(self.assertion_time_error, description=(
                "Client assertion is not within its valid time range. Current time: %s, "
                "assertion valid from %s, expiry time of assertion %s. Review the documentation "
                "at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
                % (_iso(now), _iso(nbf), _iso(exp))))

    def _grant_client_credentials(self, req, tenant, app, form):
        scope = form.get("scope")
        if not scope:
            raise _TokenError(900144, param="scope")
        scopes = scope.split()
        if len(scopes) != 1:
            raise _TokenError(70011)
        if not scopes[0].endswith("/.default"):
            raise _TokenError(1002012, scope=scopes[0])
        resource = scopes[0][:-len("/.default")]
        with self._lock:
            roles = frozenset(app.roles)
        tok = self._new_token(tenant, app.client_id, roles, frozenset(), None, resource,
                              "client_credentials")
        return self._token_success(req, tok)

    def _delegated_scopes(self, app, scope_str):
        """(resource, granted scp, requested scope list) for a delegated grant."""
        requested = (scope_str or "").split()
        if not requested:
            raise _TokenError(900144, param="scope")
        resource = None
        scp = set()
        for s in requested:
            if s in OIDC_SCOPES:
                if s not in app.delegated and s != "offline_access":
                    raise _TokenError(65001, app=app.client_id)
                continue
            res, sep, name = s.rpartition("/")
            if not sep:
                res, name = "https://graph.microsoft.com", s
            resource = resource or res
            if name == ".default":
                scp |= {d for d in app.delegated if d not in OIDC_SCOPES}
            elif name in app.delegated:
                scp.add(name)
            else:
                raise _TokenError(65001, app=app.client_id)
        return resource or "https://graph.microsoft.com", frozenset(scp), requested

    def _grant_password(self, req, tenant, app, form):
        for p in ("username", "password"):
            if p not in form:
                raise _TokenError(900144, param=p)
        resource, scp, requested = self._delegated_scopes(app, form.get("scope"))
        with self._lock:
            user = tenant.users.get(form["username"].lower())
        if user is None:
            raise _TokenError(50034, tenant=tenant.id)
        if user.password is None or not hmac.compare_digest(
                user.password.encode(), form["password"].encode()):
            raise _TokenError(50126)
        if user.mfa:
            raise _TokenError(50076)
        tok = self._new_token(tenant, app.client_id, frozenset(), scp, user.upn, resource,
                              "password")
        rt = None
        if "offline_access" in requested:
            with self._lock:
                rt = self._new_refresh(tenant, app.client_id, user.upn, tuple(requested), False)
        return self._token_success(req, tok, refresh=rt, scope=self._scope_string(resource, scp,
                                                                                   requested))

    def _grant_refresh(self, req, tenant, app, form):
        value = form.get("refresh_token")
        if not value:
            raise _TokenError(900144, param="refresh_token")
        now = time.time()
        with self._lock:
            rt = self._refresh.get(value)
            if rt is None:
                raise _TokenError(9002313)
            if rt.client_id != app.client_id or self._tenants.get(rt.tenant.lower()) is not tenant:
                raise _TokenError(70000)
            if rt.revoked or (rt.replaced and self.strict_refresh_rotation):
                raise _TokenError(50173)
            if rt.expires_at <= now:
                raise _TokenError(70008)
            user = tenant.users.get(rt.user.lower())
            if user is None:
                raise _TokenError(50173)
            if user.mfa and not rt.mfa_done:
                raise _TokenError(50076)
            rt.uses += 1
            rt.replaced = True
        scope = form.get("scope") or " ".join(rt.scopes)
        resource, scp, requested = self._delegated_scopes(app, scope)
        tok = self._new_token(tenant, app.client_id, frozenset(), scp, rt.user, resource,
                              "refresh_token")
        with self._lock:
            new = self._new_refresh(tenant, app.client_id, rt.user,
                                    tuple(set(requested) | {"offline_access"}), rt.mfa_done)
        return self._token_success(req, tok, refresh=new,
                                   scope=self._scope_string(resource, scp, requested))

    def _devicecode(self, req, tenant_name, form):
        req.log["grant_type"] = "devicecode"
        client_id = form.get("client_id")
        req.log["client_id"] = client_id
        tenant = self._find_tenant(tenant_name, form, client_id, "device_code")
        if not client_id:
            raise _TokenError(900144, param="client_id")
        with self._lock:
            app = tenant.apps.get(client_id)
        if app is None:
            raise _TokenError(700016, app=client_id, tenant=tenant.id)
        self._delegated_scopes(app, form.get("scope"))
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        dc = DeviceCode(device_code=b64url(secrets.token_bytes(48)), user_code=user_code,
                        tenant=tenant.id, client_id=client_id,
                        scopes=tuple(form.get("scope", "").split()),
                        expires_at=time.time() + self.device_code_lifetime)
        if self._auto_device_user:
            dc.state, dc.user = "approved", self._auto_device_user
        with self._lock:
            self._device[dc.device_code] = dc
        uri = "https://microsoft.com/devicelogin"
        return self._json(200, {
            "user_code": user_code, "device_code": dc.device_code, "verification_uri": uri,
            "expires_in": self.device_code_lifetime, "interval": self.device_code_interval,
            "message": "To sign in, use a web browser to open the page %s and enter the code %s "
                       "to authenticate." % (uri, user_code)},
            [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")])

    def _grant_device(self, req, tenant, app, form):
        code = form.get("device_code") or form.get("code")
        if not code:
            raise _TokenError(900144, param="device_code")
        with self._lock:
            dc = self._device.get(code)
            if dc is None or dc.client_id != app.client_id:
                raise _TokenError(70000)
            if dc.expires_at <= time.time():
                raise _TokenError(70020)
            if dc.state == "pending":
                raise _TokenError(70016)
            if dc.state == "declined":
                raise _TokenError(70019)
            if dc.state == "redeemed":
                raise _TokenError(70000)
            dc.state = "redeemed"
            user = tenant.users.get((dc.user or "").lower())
        if user is None:
            raise _TokenError(50034, tenant=tenant.id)
        resource, scp, requested = self._delegated_scopes(app, " ".join(dc.scopes))
        tok = self._new_token(tenant, app.client_id, frozenset(), scp, user.upn, resource,
                              "device_code")
        rt = None
        if "offline_access" in requested:
            with self._lock:
                rt = self._new_refresh(tenant, app.client_id, user.upn, tuple(requested), True)
        return self._token_success(req, tok, refresh=rt,
                                   scope=self._scope_string(resource, scp, requested))

    @staticmethod
    def _scope_string(resource, scp, requested):
        out = ["%s/%s" % (resource, s) for s in sorted(scp)]
        out += [s for s in requested if s in OIDC_SCOPES and s != "offline_access"]
        return " ".join(out)

    def _new_token(self, tenant, client_id, roles, scp, user, resource, grant):
        now = time.time()
        claims = {"aud": resource, "iss": "https://sts.windows.net/%s/" % tenant.id,
                  "iat": int(now), "nbf": int(now), "exp": int(now + self.token_lifetime),
                  "appid": client_id, "tid": tenant.id, "ver": "1.0", "uti": b64url(
                      secrets.token_bytes(16))}
        if user is None:
            claims["roles"] = sorted(roles)
            claims["idtyp"] = "app"
        else:
            claims["scp"] = " ".join(sorted(scp))
            claims["upn"] = user
        value = ".".join([
            b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": "fake"},
                              separators=(",", ":")).encode()),
            b64url(json.dumps(claims, separators=(",", ":")).encode()),
            b64url(secrets.token_bytes(64))])
        tok = Token(value=value, tenant=tenant.id, client_id=client_id, roles=roles, scopes=scp,
                    user=user, resource=resource.rstrip("/"), issued_at=now,
                    expires_at=now + self.token_lifetime, grant_type=grant)
        with self._lock:
            self._tokens[value] = tok
        return tok

    def _new_refresh(self, tenant, client_id, upn, scopes, mfa_done, lifetime=None):
        now = time.time()
        rt = RefreshToken(value="1.A" + b64url(secrets.token_bytes(96)), tenant=tenant.id,
                          client_id=client_id, user=upn, scopes=scopes, issued_at=now,
                          expires_at=now + (lifetime or self.refresh_token_lifetime),
                          mfa_done=mfa_done)
        self._refresh[rt.value] = rt
        return rt

    def _token_success(self, req, tok, refresh=None, scope=None):
        body = {"token_type": "Bearer"}
        if scope is not None:
            body["scope"] = scope
        body["expires_in"] = self.token_lifetime
        body["ext_expires_in"] = self.token_lifetime
        body["access_token"] = tok.value
        if refresh is not None:
            body["refresh_token"] = refresh.value
        return self._json(200, body, self._token_headers(req, _guid()))

    def _token_headers(self, req, trace):
        hdrs = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"),
                ("Expires", "-1"), ("x-ms-request-id", trace),
                ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
                ("X-Content-Type-Options", "nosniff")]
        if req.client_request_id:
            hdrs.append(("client-request-id", req.client_request_id))
        return hdrs

    def _token_error_response(self, req, err):
        trace = _guid()
        corr = req.client_request_id or _guid()
        ts = _aad_timestamp()
        req.log["error"] = err.code
        desc = "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (
            err.code, err.description, trace, corr, ts)
        body = {"error": err.error, "error_description": desc, "error_codes": [err.code],
                "timestamp": ts, "trace_id": trace, "correlation_id": corr,
                "error_uri": "%s/error?code=%d" % (self.base_url, err.code)}
        return self._json(err.status, body, self._token_headers(req, trace))

    @staticmethod
    def _json(status, obj, headers=None, content_type="application/json; charset=utf-8"):
        return Response(status, json.dumps(obj).encode(),
                        [("Content-Type", content_type)] + list(headers or []))

    # ---- Graph -------------------------------------------------------------

    def _graph_response(self, req, err):
        req.log["error"] = err.code
        body = {"code": err.code, "message": err.message}
        if err.inner:
            body["innerError"] = {
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": req.request_id,
                "client-request-id": req.client_request_id or req.request_id}
        hdrs = self._graph_headers(req) + list(err.headers)
        if err.retry_after is not None:
            hdrs.append(("Retry-After", str(err.retry_after)))
        if err.status == 401 and req.endpoint == "graph":
            hdrs.append(("WWW-Authenticate",
                         'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                         'common/oauth2/authorize", client_id="%s"' % GRAPH_APP_ID))
        return self._json(err.status, {"error": body}, hdrs, GRAPH_JSON)

    def _graph_headers(self, req):
        return [("request-id", req.request_id),
                ("client-request-id", req.client_request_id or req.request_id),
                ("Cache-Control", "no-cache")]

    def _graph_ok(self, req, status, obj=None, headers=()):
        hdrs = self._graph_headers(req) + list(headers)
        if obj is None:
            return Response(status, b"", hdrs)
        return self._json(status, obj, hdrs, GRAPH_JSON)

    def _api_endpoint(self, req, delay):
        try:
            if req.endpoint == "upload":
                return self._upload(req, delay)
            return self._graph_api(req, delay)
        except _GraphError as e:
            return self._graph_response(req, e)

    def _authenticate(self, req):
        auth = req.header("Authorization")
        if not auth:
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        scheme, _, value = auth.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self._lock:
            tok = self._tokens.get(value)
        if tok is None:
            raise _GraphError(401, "InvalidAuthenticationToken",
                              "Access token validation failure.")
        if tok.expires_at <= time.time():
            raise _GraphError(401, "InvalidAuthenticationToken",
                              "Lifetime validation failed, the token is expired.")
        resources = {r.rstrip("/") for r in self.graph_resources}
        resources |= {self.base_url, "https://localhost:%d" % self.port}
        if tok.resource not in resources:
            raise _GraphError(401, "InvalidAuthenticationToken",
                              "Access token validation failure. Invalid audience.")
        req.log["client_id"] = tok.client_id
        return tok

    @staticmethod
    def _require(tok, *perms):
        if not set(perms) & set(tok.permissions()):
            raise _GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)

    def _mailbox(self, req, tok, who, need_mailbox=True):
        """The User a request's /users/{id} or /me names (in the token's tenant)."""
        with self._lock:
            t = self._tenants.get(tok.tenant.lower())
            if who is None:
                if tok.app_only:
                    raise _GraphError(400, "BadRequest", "/me request is only valid with "
                                      "delegated authentication flow.")
                who = tok.user
            user = t.users.get(who.lower()) if t else None
            if user is None and t is not None:
                user = next((u for u in t.users.values() if u.object_id == who.lower()), None)
            if user is None:
                raise _GraphError(404, "ErrorInvalidUser", "The requested user '%s' is invalid."
                                  % who)
            req.log["mailbox"] = user.upn
            if tok.app_only:
                app = t.apps.get(tok.client_id)
                if app is not None and app.allowed_mailboxes is not None \
                        and _norm(user.upn) not in app.allowed_mailboxes:
                    raise _GraphError(403, "ErrorAccessDenied", "Access to OData is disabled: "
                                      "[RAOP] : Blocked by tenant configured AppOnly "
                                      "AccessPolicy settings.")
            elif _norm(user.upn) != _norm(tok.user) \
                    and _norm(tok.user) not in self._send_as.get(_norm(user.upn), set()):
                raise _GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
            if need_mailbox and not user.mailbox:
                raise _GraphError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either "
                                  "inactive, soft-deleted, or is hosted on-premise.")
            return user

    def _throttled(self, message):
        return _GraphError(429, "ApplicationThrottled", message,
                           retry_after=self.throttle_retry_after)

    def _over_concurrency(self):
        return self._throttled("Application is over its MailboxConcurrency limit.")

    def _graph_api(self, req, delay):
        tok = self._authenticate(req)
        path = req.path.rstrip("/")
        m = re.match(r"^/(v1\.0|beta)/(?:users/([^/]+)|me)(/.*)?$", path)
        if not m:
            return self._directory(req, tok, path)
        who, rest = m.group(2), m.group(3) or ""
        routes = [
            (r"/sendMail", "POST", ("Mail.Send",), self._send_mail),
            (r"/messages", "POST", ("Mail.ReadWrite",), self._create_draft),
            (r"/messages/([^/]+)", "GET", ("Mail.Read", "Mail.ReadWrite"), self._get_draft),
            (r"/messages/([^/]+)", "DELETE", ("Mail.ReadWrite",), self._delete_draft),
            (r"/messages/([^/]+)", "PATCH", ("Mail.ReadWrite",), self._patch_draft),
            (r"/messages/([^/]+)/attachments", "POST", ("Mail.ReadWrite",),
             self._add_attachment),
            (r"/messages/([^/]+)/attachments/createUploadSession", "POST", ("Mail.ReadWrite",),
             self._create_upload_session),
            (r"/messages/([^/]+)/send", "POST", ("Mail.Send",), self._send_draft),
            (r"", "GET", ("User.Read.All", "User.ReadBasic.All", "Directory.Read.All",
                          "User.Read"), self._get_user),
        ]
        matched_path = False
        for pattern, method, perms, fn in routes:
            rm = re.match("^" + pattern + "$", rest, re.IGNORECASE)
            if not rm:
                continue
            matched_path = True
            if method != req.method:
                continue
            if fn == self._get_user:
                if not set(perms) & set(tok.permissions()):
                    raise _GraphError(403, "Authorization_RequestDenied",
                                      "Insufficient privileges to complete the operation.")
            else:
                self._require(tok, *perms)
            user = self._mailbox(req, tok, who,
                                 need_mailbox=(fn != self._get_user))
            with self._slot((tok.client_id, _norm(user.upn)), delay):
                return fn(req, tok, user, *rm.groups())
        if matched_path:
            raise _GraphError(405, "BadRequest", "The HTTP method '%s' is not allowed for this "
                              "resource." % req.method)
        raise _GraphError(400, "BadRequest", "Resource not found for the segment '%s'."
                          % (rest.strip("/").split("/")[0] or path))

    def _directory(self, req, tok, path):
        m = re.match(r"^/(v1\.0|beta)/applications(?:\(appId='([^']+)'\)|/([^/]+))?$", path,
                     re.IGNORECASE)
        if not m or req.method != "GET":
            raise _GraphError(400, "BadRequest", "Resource not found for the segment '%s'."
                              % path.strip("/").split("/")[-1])
        if not tok.app_only or not {"Application.Read.All", "Application.ReadWrite.All",
                                    "Application.ReadWrite.OwnedBy",
                                    "Directory.Read.All"} & tok.roles:
            raise _GraphError(403, "Authorization_RequestDenied",
                              "Insufficient privileges to complete the operation.")
        with self._lock:
            t = self._tenants[tok.tenant.lower()]
            apps = list(t.apps.values())
        wanted = m.group(2)
        if m.group(3):
            app = next((a for a in apps if a.object_id == m.group(3)), None)
            if app is None:
                raise _GraphError(404, "Request_ResourceNotFound", "Resource '%s' does not "
                                  "exist or one of its queried reference-property objects are "
                                  "not present." % m.group(3))
            return self._graph_ok(req, 200, self._application_json(app))
        if wanted:
            app = next((a for a in apps if a.client_id == wanted), None)
            if app is None:
                raise _GraphError(404, "Request_ResourceNotFound", "Resource '%s' does not "
                                  "exist or one of its queried reference-property objects are "
                                  "not present." % wanted)
            return self._graph_ok(req, 200, self._application_json(app))
        flt = (req.query.get("$filter") or [""])[0]
        fm = re.search(r"appId\s+eq\s+'([^']+)'", flt, re.IGNORECASE)
        if fm:
            apps = [a for a in apps if a.client_id == fm.group(1)]
        return self._graph_ok(req, 200, {
            "@odata.context": "%s/v1.0/$metadata#applications" % self.base_url,
            "value": [self._application_json(a) for a in apps]})

    def _application_json(self, app):
        return {
            "id": app.object_id, "appId": app.client_id, "displayName": app.display_name,
            "passwordCredentials": [{
                "customKeyIdentifier": None, "displayName": s.display_name,
                "endDateTime": _iso(s.end), "hint": s.value[:3], "keyId": s.key_id,
                "secretText": None, "startDateTime": _iso(s.start)} for s in app.secrets],
            "keyCredentials": [{
                "customKeyIdentifier": hashlib.sha1(c.der).hexdigest().upper(),
                "displayName": "CN=" + c.subject.split("CN=")[-1].split("CN =")[-1].strip(),
                "endDateTime": _iso(c.not_after), "key": None, "keyId": c.key_id,
                "startDateTime": _iso(c.not_after - 365 * 86400), "type": "AsymmetricX509Cert",
                "usage": "Verify"} for c in app.certs]}

    def _get_user(self, req, tok, user):
        return self._graph_ok(req, 200, {
            "@odata.context": "%s/v1.0/$metadata#users/$entity" % self.base_url,
            "id": user.object_id, "displayName": user.display_name,
            "userPrincipalName": user.upn, "mail": user.upn if user.mailbox else None})

    # ---- messages ----------------------------------------------------------

    def _too_large(self):
        if self.request_too_large_status == 413:
            return _GraphError(413, "RequestEntityTooLarge", TOO_LARGE_MESSAGE)
        return _GraphError(400, "BadRequest", TOO_LARGE_MESSAGE)

    def _size_exceeded(self):
        return _GraphError(self.message_size_status, "ErrorMessageSizeExceeded", SIZE_EXCEEDED)

    def _body_json(self, req):
        if req.body is None:
            raise self._too_large()
        if not req.body.strip():
            raise _GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        try:
            obj = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise _GraphError(400, "BadRequest", BAD_JSON)
        if not isinstance(obj, dict):
            raise _GraphError(400, "BadRequest", BAD_JSON)
        return obj

    def _body_mime(self, req):
        if req.body is None:
            raise self._too_large()
        text = re.sub(rb"[\r\n\t ]", b"", req.body)
        try:
            mime = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _GraphError(400, "ErrorMimeContentInvalidBase64String",
                              "Invalid base64 string for MIME content.")
        headers = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            mime, headersonly=True)
        if not mime.strip() or not headers.keys():
            raise _GraphError(400, "ErrorMimeContentInvalid", "Invalid MIME content.")
        return mime

    @staticmethod
    def _mime_addresses(mime):
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            mime, headersonly=True)
        out = {}
        for field_, key in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
            values = [str(v) for v in msg.get_all(field_, [])]
            addrs = []
            for _, a in email.utils.getaddresses(values):
                a = _norm(a)
                if a and a not in addrs:
                    addrs.append(a)
            out[key] = addrs
        frm = email.utils.getaddresses([str(v) for v in msg.get_all("From", [])])
        out["from"] = _norm(frm[0][1]) if frm else None
        return out

    @staticmethod
    def _json_addresses(message):
        out = {}
        for field_, key in (("toRecipients", "to"), ("ccRecipients", "cc"),
                            ("bccRecipients", "bcc")):
            addrs = []
            value = message.get(field_) or []
            if not isinstance(value, list):
                raise _GraphError(400, "BadRequest", BAD_JSON)
            for r in value:
                a = _norm(((r or {}).get("emailAddress") or {}).get("address"))
                if not a or not ADDRESS_RE.match(a):
                    raise _GraphError(400, "ErrorInvalidRecipients", "At least one recipient is "
                                      "not valid., Recipient '%s' is not resolved. All "
                                      "recipients must be resolved before a message can be "
                                      "submitted." % a)
                if a not in addrs:
                    addrs.append(a)
            out[key] = addrs
        frm = ((message.get("from") or {}).get("emailAddress") or {}).get("address")
        out["from"] = _norm(frm) if frm else None
        return out

    @staticmethod
    def _check_recipients(addrs):
        allr = addrs["to"] + addrs["cc"] + addrs["bcc"]
        if not allr:
            raise _GraphError(400, "ErrorInvalidRecipients", NO_RECIPIENTS)
        for a in allr:
            if not ADDRESS_RE.match(a):
                raise _GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not "
                                  "valid., Recipient '%s' is not resolved. All recipients must "
                                  "be resolved before a message can be submitted." % a)

    @staticmethod
    def _check_headers(message):
        hdrs = message.get("internetMessageHeaders")
        if hdrs is None:
            return
        if not isinstance(hdrs, list):
            raise _GraphError(400, "BadRequest", BAD_JSON)
        for h in hdrs:
            name = str((h or {}).get("name") or "")
            if not name.lower().startswith("x-"):
                raise _GraphError(400, "InvalidInternetMessageHeader", "The internet message "
                                  "header name '%s' should start with 'x-' or 'X-'." % name)

    def _check_send_as(self, user, from_addr, tok):
        mbox = _norm(user.upn)
        with self._lock:
            if mbox in self._send_as_denied:
                raise _GraphError(403, "ErrorSendAsDenied", SEND_AS_DENIED)
            if not self.enforce_send_as or not from_addr:
                return
            allowed = {mbox} | user.aliases | self._send_as.get(mbox, set())
            if from_addr not in allowed:
                raise _GraphError(403, "ErrorSendAsDenied", SEND_AS_DENIED)

    def _check_rate(self, user):
        left = self._rate_wait(self._sends, _norm(user.upn), self.rate_limit)
        if left is not None:
            raise _GraphError(429, "ApplicationThrottled",
                              "Application is over its MessageRate limit.",
                              retry_after=max(1, int(left + 0.999)))

    def _store(self, data):
        fd, p = tempfile.mkstemp(dir=self.workdir, prefix="att-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(p)

    def _json_attachments(self, message):
        out = []
        for a in message.get("attachments") or []:
            out.append(self._file_attachment(a, via="json"))
        return out

    def _file_attachment(self, a, via="post"):
        if not isinstance(a, dict):
            raise _GraphError(400, "BadRequest", BAD_JSON)
        otype = a.get("@odata.type", "")
        if otype.lower() != "#microsoft.graph.fileattachment":
            raise _GraphError(400, "ErrorInvalidRequest", "The fake supports only "
                              "fileAttachment, not '%s'." % otype)
        try:
            data = base64.b64decode(re.sub(r"\s", "", a.get("contentBytes") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise _GraphError(400, "ErrorInvalidRequest", "Invalid base64 string for "
                              "contentBytes.")
        if len(data) > ATTACHMENT_POST_LIMIT:
            raise self._too_large()
        return Attachment(id=_item_id(), name=a.get("name") or "", content_type=a.get(
            "contentType") or "application/octet-stream", is_inline=bool(a.get("isInline")),
            content_id=a.get("contentId"), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), path=self._store(data), via=via)

    def _send_mail(self, req, tok, user):
        ctype = req.content_type()
        if ctype == "text/plain":
            mime = self._body_mime(req)
            addrs = self._mime_addresses(mime)
            self._check_recipients(addrs)
            if len(mime) > self.max_message_size:
                raise self._size_exceeded()
            self._check_send_as(user, addrs["from"], tok)
            self._check_rate(user)
            self._record(SentMessage(
                mailbox=user.upn, kind="mime", to=addrs["to"], cc=addrs["cc"], bcc=addrs["bcc"],
                save_to_sent_items=True, time=time.time(), tenant=tok.tenant,
                client_id=tok.client_id, user=tok.user, mime=mime, request_id=req.request_id))
            return self._graph_ok(req, 202)
        if ctype != "application/json":
            raise _GraphError(415, "UnsupportedMediaType", "Content-Type '%s' is not supported."
                              % (req.header("Content-Type") or ""))
        obj = self._body_json(req)
        message = obj.get("message") if "message" in obj else obj.get("Message")
        if not isinstance(message, dict):
            raise _GraphError(400, "ErrorInvalidParameter",
                              "The value of the parameter 'Message' is empty.")
        save = obj.get("saveToSentItems", True)
        if not isinstance(save, bool):
            raise _GraphError(400, "BadRequest", "Cannot convert the literal '%s' to the "
                              "expected type 'Edm.Boolean'." % save)
        self._check_headers(message)
        addrs = self._json_addresses(message)
        self._check_recipients(addrs)
        atts = self._json_attachments(message)
        if req.body_len > self.max_message_size:
            raise self._size_exceeded()
        self._check_send_as(user, addrs["from"], tok)
        self._check_rate(user)
        self._record(SentMessage(
            mailbox=user.upn, kind="json", to=addrs["to"], cc=addrs["cc"], bcc=addrs["bcc"],
            save_to_sent_items=save, time=time.time(), tenant=tok.tenant,
            client_id=tok.client_id, user=tok.user, message=message, attachments=atts,
            request_id=req.request_id))
        return self._graph_ok(req, 202)

    def _draft_json(self, d):
        addrs = self._draft_addresses(d)

        def rec(lst):
            return [{"emailAddress": {"name": a, "address": a}} for a in lst]

        subject = None
        if d.mime is not None:
            msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                d.mime, headersonly=True)
            subject = msg.get("Subject")
        elif d.message:
            subject = d.message.get("subject")
        return {"@odata.context": "%s/v1.0/$metadata#users('%s')/messages/$entity"
                                  % (self.base_url, quote(d.mailbox)),
                "@odata.etag": 'W/"%s"' % b64url(secrets.token_bytes(12)),
                "id": d.id, "createdDateTime": _iso(d.created)[:19] + "Z",
                "lastModifiedDateTime": _iso(time.time())[:19] + "Z",
                "subject": subject, "isDraft": True, "hasAttachments": bool(d.attachments),
                "toRecipients": rec(addrs["to"]), "ccRecipients": rec(addrs["cc"]),
                "bccRecipients": rec(addrs["bcc"])}

    def _draft_addresses(self, d):
        if d.mime is not None:
            return self._mime_addresses(d.mime)
        return self._json_addresses(d.message or {})

    def _draft_size(self, d):
        base = len(d.mime) if d.mime is not None else len(json.dumps(d.message or {}))
        return base + sum(a.size for a in d.attachments) * 4 // 3

    def _create_draft(self, req, tok, user):
        ctype = req.content_type()
        if ctype == "text/plain":
            mime, message = self._body_mime(req), None
            atts = []
        elif ctype == "application/json":
            message = self._body_json(req)
            self._check_headers(message)
            self._json_addresses(message)
            atts = self._json_attachments(message)
            message = {k: v for k, v in message.items() if k != "attachments"}
            mime = None
        else:
            raise _GraphError(415, "UnsupportedMediaType", "Content-Type '%s' is not supported."
                              % (req.header("Content-Type") or ""))
        d = Draft(id=_item_id(), tenant=tok.tenant, mailbox=user.upn, client_id=tok.client_id,
                  user=tok.user, mime=mime, message=message, created=time.time(),
                  attachments=atts)
        if self._draft_size(d) > self.max_message_size:
            raise self._size_exceeded()
        with self._lock:
            self._drafts[d.id] = d
        return self._graph_ok(req, 201, self._draft_json(d))

    def _draft(self, user, mid):
        with self._lock:
            d = self._drafts.get(mid)
        if d is None or _norm(d.mailbox) != _norm(user.upn):
            raise _GraphError(404, "ErrorItemNotFound",
                              "The specified object was not found in the store.")
        return d

    def _get_draft(self, req, tok, user, mid):
        return self._graph_ok(req, 200, self._draft_json(self._draft(user, mid)))

    def _delete_draft(self, req, tok, user, mid):
        d = self._draft(user, mid)
        with self._lock:
            self._drafts.pop(d.id, None)
            for sid in [s.id for s in self._sessions.values() if s.draft_id == d.id]:
                self._drop_session(sid)
        return self._graph_ok(req, 204)

    def _patch_draft(self, req, tok, user, mid):
        """Only singleValueExtendedProperties ({"id": "Boolean 0x0E01", "value":
        "true"}: PidTagDeleteAfterSubmit, the draft is not kept in Sent Items)."""
        d = self._draft(user, mid)
        if req.content_type() != "application/json":
            raise _GraphError(415, "UnsupportedMediaType", "Content-Type '%s' is not supported."
                              % (req.header("Content-Type") or ""))
        obj = self._body_json(req)
        props = obj.get("singleValueExtendedProperties", [])
        if not isinstance(props, list) or any(
                not isinstance(p, dict) or not isinstance(p.get("id"), str)
                or not isinstance(p.get("value"), str) for p in props):
            raise _GraphError(400, "ErrorInvalidExtendedPropertyValue",
                              "The extended property is not valid.")
        with self._lock:
            for p in props:
                d.extended[p["id"].lower()] = p["value"]
        return self._graph_ok(req, 200, self._draft_json(d))

    def _add_attachment(self, req, tok, user, mid):
        d = self._draft(user, mid)
        if req.content_type() != "application/json":
            raise _GraphError(415, "UnsupportedMediaType", "Content-Type '%s' is not supported."
                              % (req.header("Content-Type") or ""))
        att = self._file_attachment(self._body_json(req))
        with self._lock:
            if self._draft_size(d) + att.size * 4 // 3 > self.max_message_size:
                raise self._size_exceeded()
            d.attachments.append(att)
        return self._graph_ok(req, 201, {
            "@odata.context": "%s/v1.0/$metadata#users('%s')/messages('%s')/attachments/$entity"
                              % (self.base_url, quote(user.upn), quote(d.id)),
            "@odata.type": "#microsoft.graph.fileAttachment", "id": att.id,
            "lastModifiedDateTime": _iso(time.time())[:19] + "Z", "name": att.name,
            "contentType": att.content_type, "size": att.size, "isInline": att.is_inline,
            "contentId": att.content_id})

    def _create_upload_session(self, req, tok, user, mid):
        d = self._draft(user, mid)
        obj = self._body_json(req)
        item = obj.get("AttachmentItem", obj.get("attachmentItem"))
        if not isinstance(item, dict):
            raise _GraphError(400, "ErrorInvalidParameter", "The value of the parameter "
                              "'AttachmentItem' is empty.")
        if str(item.get("attachmentType", "")).lower() != "file":
            raise _GraphError(400, "ErrorInvalidParameter", "The attachmentType must be 'file'.")
        name, size = item.get("name"), item.get("size")
        if not name or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _GraphError(400, "ErrorInvalidParameter",
                              "AttachmentItem needs a name and a size.")
        if size < UPLOAD_SESSION_MIN:
            raise _GraphError(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                              "Attachment size must be greater than the minimum size.")
        if size > UPLOAD_SESSION_MAX or self._draft_size(d) + size * 4 // 3 > \
                self.max_message_size:
            raise self._size_exceeded()
        fd, p = tempfile.mkstemp(dir=self.workdir, prefix="upload-")
        os.close(fd)
        s = UploadSession(id=_item_id(), draft_id=d.id, tenant=tok.tenant, mailbox=user.upn,
                          user_object_id=user.object_id, client_id=tok.client_id, name=name,
                          content_type=item.get("contentType") or "application/octet-stream",
                          size=size, is_inline=bool(item.get("isInline")),
                          content_id=item.get("contentId"),
                          authtoken=b64url(secrets.token_bytes(48)),
                          expires_at=time.time() + self.upload_session_lifetime, path=Path(p))
        with self._lock:
            self._sessions[s.id] = s
        return self._graph_ok(req, 201, {
            "@odata.context": "%s/v1.0/$metadata#microsoft.graph.uploadSession" % self.base_url,
            "uploadUrl": self._session_url(s) + "?authtoken=" + s.authtoken,
            "expirationDateTime": _iso(s.expires_at), "nextExpectedRanges": ["0-"]})

    def _session_base(self, s):
        return "%s/api/v2.0/Users('%s@%s')/Messages('%s')" % (
            self.base_url, s.user_object_id, s.tenant, s.draft_id)

    def _session_url(self, s):
        return self._session_base(s) + "/AttachmentSessions('%s')" % s.id

    def _drop_session(self, sid):
        s = self._sessions.pop(sid, None)
        if s is not None:
            try:
                os.unlink(s.path)
            except OSError:
                pass

    def _upload(self, req, delay):
        m = re.match(r"^/api/v2\.0/Users\('([^']*)'\)/Messages\('([^']*)'\)/"
                     r"AttachmentSessions\('([^']*)'\)$", req.path, re.IGNORECASE)
        if not m:
            raise _GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.", inner=False)
        if req.header("Authorization") is not None:
            # The upload URL carries its own token; a Bearer header beside it
            # is refused (the docs: do not send one).
            raise _GraphError(401, "InvalidAudience", "The audience claim value is invalid for "
                              "this resource. Do not send an Authorization header to an upload "
                              "URL.", inner=False)
        with self._lock:
            s = self._sessions.get(m.group(3))
        token = (req.query.get("authtoken") or [""])[0]
        if s is None or s.draft_id != m.group(2):
            raise _GraphError(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.", inner=False)
        if not hmac.compare_digest(token.encode(), s.authtoken.encode()):
            raise _GraphError(401, "InvalidAuthenticationToken",
                              "Access token validation failure.", inner=False)
        if s.expires_at <= time.time():
            raise _GraphError(401, "TokenExpired", "The upload session has expired.",
                              inner=False)
        req.log["mailbox"] = s.mailbox
        req.log["client_id"] = s.client_id
        if req.method == "DELETE":
            with self._lock:
                self._drop_session(s.id)
            return self._graph_ok(req, 204)
        if req.method != "PUT":
            raise _GraphError(405, "BadRequest", "The HTTP method '%s' is not allowed for this "
                              "resource." % req.method, inner=False)
        with self._slot((s.client_id, _norm(s.mailbox)), delay):
            return self._upload_put(req, s)

    def _upload_put(self, req, s):
        cr = req.header("Content-Range") or ""
        m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", cr)
        if not m:
            raise _GraphError(400, "InvalidContentRange", "The Content-Range header is missing "
                              "or malformed: '%s'." % cr, inner=False)
        start, end, total = (int(g) for g in m.groups())
        if req.body is None or req.body_len > UPLOAD_CHUNK_LIMIT:
            raise _GraphError(413, "RequestEntityTooLarge", "At most 4 MB can be uploaded in "
                              "one request.", inner=False)
        if total != s.size or end < start or end >= total:
            raise _GraphError(400, "InvalidContentRange", "The Content-Range '%s' does not fit "
                              "the file size %d." % (cr, s.size), inner=False)
        if end - start + 1 != len(req.body):
            raise _GraphError(400, "InvalidContentRange", "The Content-Range '%s' does not "
                              "match the %d bytes sent." % (cr, len(req.body)), inner=False)
        with self._lock:
            if self._sessions.get(s.id) is not s:
                raise _GraphError(404, "ErrorItemNotFound", "The specified object was not "
                                  "found in the store.", inner=False)
            if start != s.received:
                raise _GraphError(416, "InvalidRange", "The range starts at %d; the next "
                                  "expected byte is %d." % (start, s.received), inner=False,
                                  headers=[])
            with open(s.path, "ab") as f:
                f.write(req.body)
            s.received += len(req.body)
            if s.received < s.size:
                return self._graph_ok(req, 200, {
                    "@odata.context": "%s/api/v2.0/$metadata#Users('%s%%40%s')/Messages('%s')/"
                                      "AttachmentSessions/$entity" % (
                                          self.base_url, s.user_object_id, s.tenant,
                                          quote(s.draft_id)),
                    "ExpirationDateTime": _iso(s.expires_at),
                    "nextExpectedRanges": [str(s.received)]})
            d = self._drafts.get(s.draft_id)
            self._sessions.pop(s.id, None)
            if d is None:
                raise _GraphError(404, "ErrorItemNotFound", "The specified object was not "
                                  "found in the store.", inner=False)
            h = hashlib.sha256()
            with open(s.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            att = Attachment(id=_item_id(), name=s.name, content_type=s.content_type,
                             is_inline=s.is_inline, content_id=s.content_id, size=s.size,
                             sha256=h.hexdigest(), path=s.path, via="upload")
            d.attachments.append(att)
        location = self._session_base(s) + "/Attachments('%s')" % att.id
        return self._graph_ok(req, 201, None, [("Location", location)])

    def _send_draft(self, req, tok, user, mid):
        d = self._draft(user, mid)
        if req.body_len:
            raise _GraphError(400, "BadRequest", "The send action takes no request body.")
        addrs = self._draft_addresses(d)
        self._check_recipients(addrs)
        if self._draft_size(d) > self.max_message_size:
            raise self._size_exceeded()
        self._check_send_as(user, addrs["from"], tok)
        self._check_rate(user)
        with self._lock:
            if self._drafts.pop(d.id, None) is None:
                raise _GraphError(404, "ErrorItemNotFound",
                                  "The specified object was not found in the store.")
        delete_after_submit = d.extended.get("boolean 0x0e01", "").lower() == "true"
        self._record(SentMessage(
            mailbox=user.upn, kind="draft", to=addrs["to"], cc=addrs["cc"], bcc=addrs["bcc"],
            save_to_sent_items=not delete_after_submit, time=time.time(), tenant=tok.tenant,
            client_id=tok.client_id, user=tok.user, mime=d.mime, message=d.message,
            attachments=list(d.attachments), message_id=d.id, request_id=req.request_id))
        return self._graph_ok(req, 202)


# --------------------------------------------------------------------------


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Run the fake Microsoft identity platform + Graph.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tenant", default="contoso.example")
    ap.add_argument("--client-id", default="11111111-2222-3333-4444-555555555555")
    ap.add_argument("--secret", default="fake-secret")
    ap.add_argument("--cert", help="PEM certificate to register as a certificate credential")
    ap.add_argument("--user", action="append", default=[],
                    help="mailbox UPN (repeatable; default relay@TENANT)")
    ap.add_argument("--password", default=None, help="password of the users (password grant)")
    ap.add_argument("--roles", default="Mail.Send,Mail.ReadWrite,Application.Read.All")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    with FakeMicrosoft(port=args.port, verbose=args.verbose) as fake:
        fake.add_app(args.tenant, args.client_id, secret=args.secret, cert_pem=args.cert,
                     roles=[r for r in args.roles.split(",") if r])
        users = args.user or ["relay@" + args.tenant]
        for u in users:
            fake.add_user(args.tenant, u, password=args.password)
        print("base URL:   %s" % fake.base_url)
        print("CA file:    %s" % fake.ca_file)
        print("token URL:  %s" % fake.token_url(args.tenant))
        print("client id:  %s   secret: %s" % (args.client_id, args.secret))
        print("mailboxes:  %s" % ", ".join(users))
        print("Ctrl-C stops it.", flush=True)
        run_until_interrupted([(lambda: fake.sent, lambda m: "sent: %s %s -> %s" % (
            m.kind, m.mailbox, ", ".join(m.recipients)))])


if __name__ == "__main__":
    main()
