"""The HTTPS server the fake cloud services (fake_microsoft.py,
fake_google.py) are built on: TLS with a TestCA server certificate on
127.0.0.1 (port 0 by default), a thread per connection (the TLS handshake
on it too), request bodies read with Content-Length or chunked framing and
kept up to a limit, injected faults (fail / delay / reset) matched by
endpoint, path and method, a request log without secrets, a record of the
messages the fake accepted, and a forced token endpoint error.

A fake subclasses HttpsFake and sets its class attributes (name,
server_version, api, body_limit, length_required_methods, log_fields and
the record classes), then answers requests in the hooks _classify(),
_token_endpoint(), _api_endpoint(), _not_found(), _length_required() and
_fault_response(), each returning a Response (and names the error of a full
concurrency slot in _over_concurrency()). Every path is sorted into an
endpoint by _classify(): "token", the fake's `api` (its mail API), "upload"
(its upload URLs) or "other".

Thread-safe: all state is behind the one lock of FakeBase; sleeps happen
outside it.
"""

import contextlib
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from .fake_base import FakeBase
except ImportError:
    from fake_base import FakeBase


def unique(items):
    """The items in their order, each once."""
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def recent(windows, key, since, when=lambda entry: entry):
    """windows[key], a deque of entries in time order (made when missing),
    after dropping those of time `since` or earlier from its front;
    when(entry) is an entry's time (by default the entry is the time). For
    rate limits over a sliding window; call it under the fake's lock."""
    q = windows.setdefault(key, deque())
    while q and when(q[0]) <= since:
        q.popleft()
    return q


# --------------------------------------------------------------------------
# Requests, responses, faults, log entries


class Request:
    """A request as the fake's handlers see it."""

    def __init__(self, handler, method, path, query, body, body_len, endpoint):
        self.handler = handler
        self.method = method
        self.path = path               # unquoted, without the query
        self.query = query             # parse_qs of the query string
        self.headers = handler.headers
        self.body = body               # None when over the fake's body_limit
        self.body_len = body_len
        self.endpoint = endpoint
        self.request_id = uuid.uuid4().hex
        self.log = {}                  # fields for the LogEntry (the fake's log_fields)

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def content_type(self):
        """The media type of Content-Type, lower-cased, without parameters."""
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def param(self, name):
        """The first value of a query parameter, or None."""
        v = self.query.get(name)
        return v[0] if v else None


class Response:
    def __init__(self, status, body=b"", headers=None, close=False):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.close = close


class BadFraming(Exception):
    """A request body whose length or chunks cannot be read."""


@dataclass
class Fault:
    """An injected fault; fakes subclass it to add what their error bodies
    are made of."""
    kind: str                  # fail | reset | delay
    remaining: object          # int, or None for "until cleared"
    endpoint: str              # the fake's api (matches upload too) | token | upload | any
    path_contains: object
    method: object
    status: int = 0
    message: object = None
    retry_after: object = None
    seconds: float = 0.0
    after_processing: bool = False

    def matches(self, endpoint, method, path, api):
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.endpoint == api and endpoint not in (api, "upload"):
            return False
        if self.endpoint in ("token", "upload") and endpoint != self.endpoint:
            return False
        if self.path_contains and self.path_contains not in path:
            return False
        if self.method and self.method.upper() != method:
            return False
        return True


@dataclass
class LogEntry:
    """The fields every fake's log entry starts with; a fake's LogEntry adds
    its own, content_type and body_length among them."""
    time: float
    method: str
    path: str
    endpoint: str
    status: object             # None when the connection was reset instead
    authorization: bool        # an Authorization header was sent


# --------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 120

    @property
    def server_version(self):
        return self.server.fake.server_version

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write(self.server.fake.name + ": " + (fmt % args) + "\n")

    def _run(self):
        try:
            self.server.fake._handle(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _run


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, fake, ssl_ctx):
        self.fake = fake
        self.ssl_ctx = ssl_ctx
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the connection's own thread, so a
        # slow or broken client never stalls accept().
        request.settimeout(30)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.fake._track(tls, True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            self.fake._track(tls, False)
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.fake.verbose:
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------
# The base fake


class HttpsFake(FakeBase):
    """An HTTPS fake on `host` (see the module doc)."""

    name = "https_fake"                  # log prefix; the server thread is named after it
    server_version = "HttpsFake/1.0"     # the Server header
    api = "api"                          # the endpoint faults match by default
    body_limit = 4 * 1024 * 1024         # bytes of a request body kept (more is read and dropped)
    length_required_methods = ("POST", "PUT", "PATCH")   # unframed ones get _length_required()
    log_fields = ("error",)              # LogEntry fields copied from Request.log
    request_class = Request
    fault_class = Fault
    log_entry_class = LogEntry

    def __init__(self, ca=None, host="127.0.0.1", port=0, verbose=False):
        super().__init__(ca)
        self.host = host
        self._want_port = port
        self.verbose = verbose
        self.port = None
        self._server = None
        self._thread = None
        self._conns = set()
        self.concurrency_limit = 0       # see _slot()
        self._inflight = Counter()
        self._faults = []
        self._token_error = None         # dict of the error's details and "remaining"
        self._sessions = {}              # upload session id -> the fake's session record
        self._sent = []
        self._log = []
        self.token_events = []           # dicts, one per token request

    # ---- lifecycle ---------------------------------------------------------

    def start(self):
        self._server = _Server((self.host, self._want_port), self, self.ca.server_context())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name=self.name.replace("_", "-"))
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(timeout=5)
            self._server = None
        self._release_ca()

    @property
    def base_url(self):
        """https://host:port of the server."""
        if self.port is None:
            raise RuntimeError("%s is not started" % type(self).__name__)
        return "https://%s:%d" % (self.host, self.port)

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # ---- faults ------------------------------------------------------------

    def _add_fault(self, kind, n, endpoint, path_contains, method, **details):
        """Adds a fault of fault_class. Without `endpoint` it matches the
        fake's api (and upload) requests, or any request when
        `path_contains` is given."""
        if not endpoint:
            endpoint = "any" if path_contains else self.api
        fault = self.fault_class(kind, n, endpoint, path_contains, method, **details)
        with self._lock:
            self._faults.append(fault)

    def _set_delay(self, seconds, n, endpoint, path_contains, method):
        """Replaces any delay by this one (none when seconds <= 0)."""
        with self._lock:
            self._faults = [f for f in self._faults if f.kind != "delay"]
        if seconds > 0:
            self._add_fault("delay", n, endpoint, path_contains, method, seconds=seconds)

    def _take_faults(self, endpoint, method, path):
        """(fail-or-reset fault or None, delay seconds)."""
        with self._lock:
            hit = None
            seconds = 0.0
            for f in self._faults:
                if not f.matches(endpoint, method, path, self.api):
                    continue
                if f.kind == "delay":
                    if f.remaining is not None:
                        f.remaining -= 1
                    seconds = f.seconds
                elif hit is None:
                    if f.remaining is not None:
                        f.remaining -= 1
                    hit = f
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
            return hit, seconds

    def _force_token_error(self, n, **details):
        """Token requests fail with this error for the next `n` (None: until
        cleared); a `grant` detail limits it to that grant."""
        with self._lock:
            self._token_error = dict(details, remaining=n)

    def _take_token_error(self, grant=None):
        """The forced token error's details for a request (of `grant`),
        counting it, or None."""
        with self._lock:
            forced = self._token_error
            if not forced or forced.get("grant") not in (None, grant):
                return None
            if forced["remaining"] is not None:
                forced["remaining"] -= 1
                if forced["remaining"] <= 0:
                    self._token_error = None
            return forced

    def clear_token_error(self):
        with self._lock:
            self._token_error = None

    def clear_faults(self):
        with self._lock:
            self._faults = []
            self._token_error = None

    # ---- limits ------------------------------------------------------------

    @contextlib.contextmanager
    def _slot(self, key, delay):
        """Holds one of the concurrency_limit slots of `key` (0: unlimited)
        for the block, sleeping `delay` seconds in it first, as a slow
        backend would; raises _over_concurrency() when all are taken."""
        with self._lock:
            if self.concurrency_limit and self._inflight[key] >= self.concurrency_limit:
                raise self._over_concurrency()
            self._inflight[key] += 1
        try:
            if delay:
                time.sleep(delay)
            yield
        finally:
            with self._lock:
                self._inflight[key] -= 1
                if self._inflight[key] <= 0:
                    del self._inflight[key]

    def _rate_wait(self, windows, key, limit, span=60):
        """Counts a call of `key` against `limit` calls per `span` seconds
        (0: no limit) and returns None; or, when `limit` calls are in the
        window already, counts nothing and returns the seconds until the
        oldest of them leaves it."""
        if not limit:
            return None
        now = time.time()
        with self._lock:
            q = recent(windows, key, now - span)
            if len(q) >= limit:
                return q[0] + span - now
            q.append(now)
            return None

    # ---- records -----------------------------------------------------------

    @property
    def sent(self):
        return self._snapshot(self._sent)

    def wait_sent(self, n=1, timeout=10):
        """Waits until at least `n` messages were accepted; returns them all.
        Raises TimeoutError otherwise."""
        return self._wait_count(lambda: self._sent, n, timeout, "sent messages")

    def _record(self, msg):
        with self._cond:
            self._sent.append(msg)
            self._cond.notify_all()

    @property
    def requests(self):
        return self._snapshot(self._log)

    def requests_to(self, path_contains, method=None):
        return [e for e in self.requests if path_contains in e.path
                and (method is None or e.method == method)]

    @property
    def upload_sessions(self):
        return self._snapshot(self._sessions, dict)

    def expire_upload_sessions(self):
        """Open upload sessions expire (their uploads get 404)."""
        with self._lock:
            for s in self._sessions.values():
                s.expires_at = time.time() - 1

    def clear_records(self):
        """Forgets sent messages, the request log and the token events."""
        with self._lock:
            self._sent = []
            self._log = []
            self.token_events = []

    # ---- requests ----------------------------------------------------------

    def _read_body(self, h):
        """(body bytes or None when over body_limit, length, framed)."""
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        buf = bytearray()

        def take(n, total):
            # Reads n bytes, keeping them only while the body is within the
            # limit; returns the new total.
            left = n
            while left:
                chunk = h.rfile.read(min(left, 1 << 16))
                if not chunk:
                    raise BadFraming()
                left -= len(chunk)
                total += len(chunk)
                if total <= self.body_limit:
                    buf.extend(chunk)
            return total

        total = 0
        if "chunked" in te:
            while True:
                line = h.rfile.readline(65537)
                if not line:
                    raise BadFraming()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadFraming()
                if size == 0:
                    while True:
                        line = h.rfile.readline(65537)
                        if line in (b"\r\n", b"\n", b""):
                            break
                    break
                total = take(size, total)
                h.rfile.readline(8)
            return (bytes(buf) if total <= self.body_limit else None), total, True
        cl = h.headers.get("Content-Length")
        if cl is None:
            return b"", 0, False
        try:
            n = int(cl)
            if n < 0:
                raise ValueError
        except ValueError:
            raise BadFraming()
        total = take(n, total)
        return (bytes(buf) if total <= self.body_limit else None), total, True

    def _new_log_entry(self, h, method, path, endpoint):
        return self.log_entry_class(
            time=time.time(), method=method, path=path, endpoint=endpoint, status=None,
            authorization=h.headers.get("Authorization") is not None,
            content_type=h.headers.get("Content-Type"))

    def _handle(self, h):
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        method = h.command
        endpoint = self._classify(path)
        entry = self._new_log_entry(h, method, path, endpoint)
        try:
            body, body_len, framed = self._read_body(h)
        except BadFraming:
            h.close_connection = True
            self._send(h, Response(400, b"", close=True), entry)
            return
        entry.body_length = body_len
        req = self.request_class(h, method, path, query, body, body_len, endpoint)

        fault, delay = self._take_faults(endpoint, method, path)
        if fault is not None and fault.kind == "reset" and not fault.after_processing:
            if delay:
                time.sleep(delay)
            self._reset(h, entry)
            return
        if fault is not None and fault.kind == "fail":
            if delay:
                time.sleep(delay)
            resp = self._fault_response(req, fault)
        elif method in self.length_required_methods and not framed:
            resp = self._length_required(req)
        elif endpoint == "token":
            if delay:
                time.sleep(delay)
            resp = self._token_endpoint(req)
        elif endpoint in (self.api, "upload"):
            resp = self._api_endpoint(req, delay)
        else:
            resp = self._not_found(req)
        for name in self.log_fields:
            setattr(entry, name, req.log.get(name))
        if fault is not None and fault.kind == "reset":
            self._reset(h, entry)
            return
        self._send(h, resp, entry)

    def _send(self, h, resp, entry):
        entry.status = resp.status
        with self._lock:
            self._log.append(entry)
        h.send_response(resp.status)
        for k, v in resp.headers:
            h.send_header(k, v)
        if resp.status != 204 and resp.status >= 200:
            h.send_header("Content-Length", str(len(resp.body)))
        if resp.close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if resp.body:
            h.wfile.write(resp.body)
        h.wfile.flush()

    def _reset(self, h, entry):
        with self._lock:
            self._log.append(entry)
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            h.connection.close()
        except OSError:
            pass

    # ---- the fake's answers (hooks) ----------------------------------------

    def _classify(self, path):
        """token | the fake's api | upload | other."""
        raise NotImplementedError

    def _token_endpoint(self, req):
        raise NotImplementedError

    def _api_endpoint(self, req, delay):
        """A request to the api or an upload URL; `delay` (seconds) is to be
        slept while it holds its concurrency slot."""
        raise NotImplementedError

    def _not_found(self, req):
        raise NotImplementedError

    def _length_required(self, req):
        """The answer to a body-carrying request without Content-Length or
        chunked framing."""
        raise NotImplementedError

    def _fault_response(self, req, fault):
        """The answer of a "fail" fault."""
        raise NotImplementedError

    def _over_concurrency(self):
        """The exception _slot() raises when all slots are taken."""
        raise NotImplementedError
