"""A fake upstream SMTP server ("smarthost") for the end-to-end tests of the
relay's SMTP provider: ESMTP with STARTTLS or implicit TLS (RFC 3207, RFC 8314),
AUTH PLAIN / LOGIN / XOAUTH2 (RFC 4954, RFC 4616, Google's and Microsoft's
XOAUTH2 profile), PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
ENHANCEDSTATUSCODES (RFC 2034, RFC 3463) and optionally CHUNKING (RFC 3030).

It is written on raw sockets and the ssl module, one thread per connection,
so that every byte is under the test's control, and it is strict: whatever a
correct SMTP client must not do is recorded in `violations` (and answered
with the 5xx SMTP gives for it), so that a relay test can end with
`fake.assert_no_violations()`.

Tests drive it in-process:

    fake = FakeSmtpServer(mode="starttls").start()   # or FakeSmtpServer(ca=TestCA())
    fake.add_user("relay@example.com", "s3cret")
    fake.add_oauth_token("relay@example.com", "ya29.token")
    fake.rcpt_reply("bob@example.net", 550, "5.1.1 No such user")
    fake.data_reply(451, "4.3.0 Try again later", times=1)
    fake.drop_at("after_dot_before_reply")
    ... run the relay against 127.0.0.1:fake.port, trusting fake.ca_file
    [msg] = fake.wait_messages(1)
    msg.mail_from, msg.rcpt_to, msg.data, msg.auth_user, msg.acknowledged
    fake.assert_no_violations()
    fake.stop()

Checks (each a `Violation` with one of these kinds):
  pregreeting               input before the 220 greeting
  pipelining                input before a reply when PIPELINING was not
                            advertised, or after a command that must end a
                            pipelined group (EHLO, HELO, DATA, NOOP, QUIT,
                            VRFY, EXPN, TURN, AUTH, STARTTLS, SASL responses)
  starttls_injection        plaintext pipelined after STARTTLS (discarded)
  plaintext_after_starttls  anything but a TLS handshake after "220 Ready"
  bare_lf / bare_cr / nul   in a command, in DATA or in BDAT content
  command_too_long          command line over 512 octets with CRLF (+26 for
                            MAIL when SIZE is advertised, +500 for MAIL when
                            AUTH is; an AUTH line with its initial response
                            is held to the same 512, RFC 4954 section 4);
                            SASL response lines over 12288 octets
  line_too_long             a text line over 1000 octets with CRLF
  sequence                  commands out of order: MAIL/AUTH/STARTTLS before
                            EHLO (also after TLS started), nested MAIL, RCPT
                            without MAIL, DATA/BDAT without RCPT, DATA after
                            BDAT, AUTH twice or inside a transaction,
                            STARTTLS under TLS
  syntax                    malformed command or argument
  unknown_command           a verb the server does not know
  not_advertised            a command, mechanism or parameter of an
                            extension that was not advertised
  plaintext_auth            AUTH over a connection without TLS when the
                            server did not offer AUTH there
  size                      SIZE= or message content over the advertised SIZE
  8bit                      8-bit content without BODY=8BITMIME
  smtputf8                  a non-ASCII address without SMTPUTF8
  source_route              a source route in a path (RFC 5321 section 4.1.2)
  auth_protocol             undecodable or malformed SASL data, or a
                            non-empty answer to the XOAUTH2 error challenge

Thread-safe: one thread accepts, one thread serves each connection; all
shared state is behind one lock, and sleeps happen outside it.
"""

import base64
import binascii
import email
import email.policy
import itertools
import json
import re
import select
import socket
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

try:
    from .fake_base import FakeBase, run_until_interrupted
except ImportError:
    from fake_base import FakeBase, run_until_interrupted

DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES")
DEFAULT_MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2")
DEFAULT_MAX_SIZE = 35882577        # what smtp.gmail.com advertises

COMMAND_LINE_LIMIT = 512           # RFC 5321 4.5.3.1.4, CRLF included
TEXT_LINE_LIMIT = 1000             # RFC 5321 4.5.3.1.6, CRLF included
SASL_LINE_LIMIT = 12288            # RFC 4954 section 4
SIZE_PARAM_ALLOWANCE = 26          # RFC 1870
AUTH_PARAM_ALLOWANCE = 500         # RFC 4954 section 5

READ_CAP = 64 * 1024               # longest command line kept in memory
DATA_LINE_CAP = 1024 * 1024        # longest message line kept in memory

# Commands that may appear anywhere in a pipelined group (RFC 2920 section
# 3.1; BDAT by RFC 3030). Every other command must end its group: RFC 2920
# names EHLO DATA VRFY EXPN TURN QUIT NOOP and puts commands of extensions
# there unless they say otherwise (STARTTLS and AUTH do not).
PIPELINABLE = frozenset({"MAIL", "RCPT", "RSET", "BDAT"})

DROP_STAGES = ("greeting", "ehlo", "starttls", "tls_handshake", "auth", "mail", "rcpt",
               "data", "after_dot_before_reply", "after_reply", "rset", "quit")
DELAY_STAGES = ("greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "dot",
                "rset", "noop", "quit")
OVERRIDABLE = ("EHLO", "HELO", "STARTTLS", "AUTH", "DATA", "RSET", "NOOP", "QUIT")

DEFAULT_TEXT = {
    220: "ESMTP ready", 221: "2.0.0 Bye", 235: "2.7.0 Authentication successful",
    250: "2.0.0 OK", 251: "2.1.5 User not local; will forward",
    421: "4.3.2 Service shutting down, closing transmission channel",
    450: "4.2.0 Mailbox busy, try again later", 451: "4.3.0 Local error in processing",
    452: "4.3.1 Insufficient system storage", 454: "4.7.0 Temporary authentication failure",
    500: "5.5.2 Syntax error, command unrecognized", 501: "5.5.4 Syntax error in parameters",
    502: "5.5.1 Command not implemented", 503: "5.5.1 Bad sequence of commands",
    530: "5.7.0 Authentication required", 535: "5.7.8 Authentication credentials invalid",
    550: "5.1.1 Mailbox unavailable", 551: "5.1.6 User not local",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    553: "5.1.3 Mailbox name not allowed", 554: "5.5.1 Transaction failed",
}

_ENHANCED_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_U8 = "\u0080-\U0010ffff"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_LABEL_U8 = rf"[A-Za-z0-9{_U8}](?:[A-Za-z0-9{_U8}-]*[A-Za-z0-9{_U8}])?"
_ADDRESS_LITERAL = (r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+|"
                    r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+)\]")
DOMAIN_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|{_ADDRESS_LITERAL})")
_DOMAIN_U8_RE = re.compile(rf"(?:{_LABEL_U8}(?:\.{_LABEL_U8})*|{_ADDRESS_LITERAL})")
_LOCAL_RE = re.compile(rf"(?:[{_ATEXT}]+(?:\.[{_ATEXT}]+)*|{_QUOTED})")
_LOCAL_U8_RE = re.compile(rf"(?:[{_ATEXT}{_U8}]+(?:\.[{_ATEXT}{_U8}]+)*|{_QUOTED})")
_SOURCE_ROUTE_RE = re.compile(r"^@[^:,]+(?:,@[^:,]+)*:")
_PARAM_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")
_XOAUTH2_RE = re.compile(rb"user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01")


class _Closed(Exception):
    """The session is over; the reason goes to the connection record."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class _Timeout(Exception):
    pass


# --------------------------------------------------------------------------
# Records (attributes are public: tests read them)


@dataclass
class Violation:
    """Something the SMTP client did that SMTP forbids."""
    kind: str
    detail: str
    connection_id: int
    time: float

    def __str__(self):
        return "[conn %d] %s: %s" % (self.connection_id, self.kind, self.detail)


@dataclass
class AuthEvent:
    connection_id: int
    mechanism: str
    user: object               # None when it could not be decoded
    ok: bool
    tls: bool
    reply: str
    time: float


@dataclass
class ReceivedMessage:
    """A message whose content was received in full (DATA up to the final
    dot, or BDAT up to LAST), whatever the reply to it was.
    `acknowledged` is True only if a 2xx reply for it was sent."""
    id: int
    queue_id: str
    connection_id: int
    index_on_connection: int   # 1 for the first message on its connection
    mail_from: str
    rcpt_to: list              # accepted recipients, in order
    rcpt_rejected: list        # (address, code, text) for refused recipients
    data: bytes                # content as received, dot-unstuffed
    mail_params: dict          # MAIL parameters, keys upper-cased (value None for flags)
    rcpt_params: dict          # accepted address -> its RCPT parameters
    declared_size: object      # SIZE= value or None
    body: object               # BODY= value (upper-cased) or None
    auth_user: object
    auth_mechanism: object
    tls: bool
    tls_version: object        # "TLSv1.3" ... or None
    helo: object
    transfer: str              # "DATA" or "BDAT"
    received_at: float
    reply_code: object = None  # None when the connection was dropped before the reply
    reply_text: object = None
    acknowledged: bool = False
    violations: list = field(default_factory=list)   # kinds found in this message

    @property
    def size(self):
        return len(self.data)

    @property
    def email(self):
        """The content parsed as an email.message.EmailMessage."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class ConnectionRecord:
    """One TCP connection as the fake saw it. Commands have AUTH secrets
    replaced by <redacted>; message content is not in the transcript."""
    id: int
    peer: tuple
    opened_at: float
    closed_at: object = None
    close_reason: object = None    # quit | client_closed | drop:<stage> | timeout | sync | ...
    tls_version: object = None
    tls_cipher: object = None
    tls_error: object = None
    helo: object = None
    auth_user: object = None
    auth_mechanism: object = None
    commands: list = field(default_factory=list)
    transcript: list = field(default_factory=list)   # ("C" | "S", line)
    messages: int = 0              # messages received in full
    acknowledged: int = 0          # of which answered with 2xx
    violations: list = field(default_factory=list)   # kinds

    @property
    def open(self):
        return self.closed_at is None

    @property
    def tls(self):
        return self.tls_version is not None


@dataclass
class _Fault:
    kind: str                  # drop | delay
    stage: str
    seconds: float = 0.0
    times: object = None       # None: every time
    skip: int = 0
    reset: bool = False


class _Script:
    """Replies for one key: a FIFO of (code, text, remaining) consumed first,
    then a persistent default."""

    def __init__(self):
        self.queue = deque()
        self.default = None

    def add(self, code, text, times):
        if times is None:
            self.default = (code, text)
        elif times > 0:
            self.queue.append([code, text, times])

    def take(self):
        if self.queue:
            entry = self.queue[0]
            entry[2] -= 1
            if entry[2] <= 0:
                self.queue.popleft()
            return entry[0], entry[1]
        return self.default


@dataclass
class _Tx:
    mail_from: str
    params: dict
    declared_size: object
    body: object
    smtputf8: bool
    rcpts: list = field(default_factory=list)
    rcpt_params: dict = field(default_factory=dict)
    rejected: list = field(default_factory=list)
    rcpt_attempts: int = 0
    chunks: bytearray = field(default_factory=bytearray)
    used_bdat: bool = False
    bdat_failed: bool = False


def _printable(raw):
    text = raw.decode("utf-8", "replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\0", "\\0")


def _default_text(code):
    return DEFAULT_TEXT.get(code, "%d.0.0 Scripted reply" % (code // 100))


# --------------------------------------------------------------------------
# One connection


class _Session:
    def __init__(self, fake, sock, conn):
        self.fake = fake
        self.sock = sock
        self.conn = conn
        self.buf = bytearray()
        self.eof = False
        self.tls = False
        self.no_service = False        # after a 554 greeting only QUIT is served
        self.errors = 0
        self._reset_session()

    # ---- state ----------------------------------------------------------

    def _reset_session(self):
        self.ehlo_done = False
        self.esmtp = False
        self.advertised = set()
        self.helo = None
        self.auth_user = None
        self.auth_mech = None
        self._reset_tx()

    def _reset_tx(self):
        self.tx = None
        self.mail_attempted = False

    def _pipelining(self):
        return "PIPELINING" in self.advertised

    # ---- I/O ------------------------------------------------------------

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise _Timeout()
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _readline(self, cap):
        """(line with its LF, overflow) or (None, _) at end of input. A line
        longer than `cap` is cut to `cap` bytes plus its line end."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line, False
            if len(self.buf) > cap:
                return self._discard_rest_of_line(cap), True
            start = len(self.buf)
            if not self._fill():
                return None, False

    def _discard_rest_of_line(self, cap):
        head = bytes(self.buf[:cap])
        last = self.buf[-1:]
        self.buf.clear()
        while True:
            if not self._fill():
                return None
            i = self.buf.find(b"\n")
            if i >= 0:
                prev = self.buf[i - 1:i] if i > 0 else last
                del self.buf[:i + 1]
                return head + (b"\r\n" if prev == b"\r" else b"\n")
            last = self.buf[-1:]
            self.buf.clear()

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _input_pending(self, wait):
        """True if the client has sent bytes we have not processed yet
        (waiting up to `wait` seconds for them). End of input is not input."""
        if self.buf:
            return True
        if self.eof:
            return False
        deadline = time.monotonic() + max(0.0, wait)
        grace = True
        while True:
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                ready = True
            else:
                left = max(0.0, deadline - time.monotonic())
                try:
                    ready = bool(select.select([self.sock], [], [], left)[0])
                except (OSError, ValueError):
                    return False
            if not ready:
                return False
            data = None
            try:
                self.sock.settimeout(0)
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                data = None
            except (ssl.SSLError, OSError):
                data = b""
            finally:
                try:
                    self.sock.settimeout(self.fake.idle_timeout)
                except OSError:
                    pass
            if data:
                self.buf += data
                return True
            if data == b"":
                self.eof = True
                return False
            # Only part of a TLS record so far: give the rest a moment.
            if not grace:
                return False
            grace = False
            deadline = max(deadline, time.monotonic() + 0.05)

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except (ssl.SSLError, OSError):
            raise _Closed("client_closed")

    def _reply(self, code, text):
        lines = text if isinstance(text, (list, tuple)) else [text]
        if "ENHANCEDSTATUSCODES" not in self.fake.extensions_upper():
            lines = [_ENHANCED_RE.sub("", l, count=1) if code >= 200 else l for l in lines]
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            out.append("%d%s%s" % (code, sep, line))
        self.fake._transcript(self.conn, "S", out)
        self._send("".join(l + "\r\n" for l in out).encode("utf-8"))

    def _violation(self, kind, detail):
        self.errors += 1
        self.fake._add_violation(self.conn, kind, detail)

    def _sync_check(self, must_be_last, what):
        """Before a reply: input already there means the client did not
        wait for it. Returns False if the session must end (reject mode)."""
        if not must_be_last:
            return True
        if not self._input_pending(self.fake.sync_wait):
            return True
        if self._pipelining():
            detail = "input after %s, which must end a pipelined group" % what
        else:
            detail = "input after %s before its reply, PIPELINING not advertised" % what
        self._violation("pipelining", detail)
        if self.fake.sync_action == "reject":
            self._reply(554, "5.5.0 Error: SMTP protocol synchronization")
            return False
        return True

    def _respond(self, code, text, verb, stage=None):
        """The normal way to answer a command: delay, synchronisation
        check, reply; 421 closes the connection."""
        if stage:
            self.fake._apply_delay(stage)
        must_be_last = verb not in PIPELINABLE or not self._pipelining()
        if not self._sync_check(must_be_last, verb):
            raise _Closed("sync")
        self._reply(code, text)
        if code == 421:
            raise _Closed("reply_421")

    def _drop_if(self, stage):
        f = self.fake._take_fault("drop", stage)
        if f is not None:
            if f.reset:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            raise _Closed("drop:" + stage)

    # ---- main loop ------------------------------------------------------

    def run(self):
        reason = "client_closed"
        try:
            try:
                if self.fake.mode == "implicit":
                    self._handshake(self.sock)
                if self.fake._over_connection_limit(self.conn):
                    self._reply(421, "4.7.0 Too many connections, try again later")
                    raise _Closed("too_many_connections")
                self._greet()
                while True:
                    line, overflow = self._readline(READ_CAP)
                    if line is None:
                        break
                    self._command(line, overflow)
                    if self.errors > self.fake.hard_error_limit:
                        self._reply(421, "4.7.0 Too many errors, closing connection")
                        raise _Closed("too_many_errors")
            except _Timeout:
                reason = "timeout"
                try:
                    self._reply(421, "4.4.2 %s Error: timeout exceeded" % self.fake.hostname)
                except _Closed:
                    pass
        except _Closed as e:
            reason = e.reason
        except Exception as e:   # a bug in the fake must not kill the test run silently
            reason = "error: %r" % (e,)
            if self.fake.verbose:
                import traceback
                traceback.print_exc()
        finally:
            self._close()
            self.fake._connection_closed(self.conn, reason)

    def _close(self):
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except (OSError, TypeError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """From another thread (stop()): wakes the session up."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except (OSError, TypeError):
            pass

    def _handshake(self, raw):
        raw.settimeout(self.fake.handshake_timeout)
        try:
            tls = self.fake._ssl_context().wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.fake._set_conn(self.conn, tls_error=str(e))
            raise _Closed("tls_error")
        tls.settimeout(self.fake.idle_timeout)
        self.sock = tls
        self.tls = True
        self.fake._set_conn(self.conn, tls_version=tls.version(),
                            tls_cipher=(tls.cipher() or (None,))[0])

    def _greet(self):
        self._drop_if("greeting")
        wait = max(self.fake._take_delay("greeting"), self.fake.pregreet_wait)
        t0 = time.monotonic()
        if self._input_pending(wait):
            self._violation("pregreeting", "client sent data before the 220 greeting")
            if self.fake.sync_action == "reject":
                self._reply(554, "5.5.0 Error: SMTP protocol synchronization")
                raise _Closed("sync")
            rest = wait - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)
        scripted = self.fake._take_reply(("greeting",))
        code, text = scripted or (220, "%s ESMTP FakeSmtpServer ready" % self.fake.hostname)
        self._reply(code, text)
        if 400 <= code < 500:
            raise _Closed("reply_%d" % code)
        if code != 220:
            self.no_service = True

    # ---- commands -------------------------------------------------------

    def _command(self, raw, overflow):
        verb_text = raw[:12].split(b" ", 1)[0].strip().decode("ascii", "replace").upper()
        self.fake._record_command(self.conn, self._redact(raw, verb_text))
        if overflow or len(raw) > self._line_limit(verb_text):
            self._violation("command_too_long", "%s command line of %s octets (limit %d)" % (
                verb_text or "?", "more than %d" % READ_CAP if overflow else len(raw),
                self._line_limit(verb_text)))
            if verb_text == "AUTH":
                return self._respond(500, "5.5.6 Authentication Exchange line is too long", "AUTH")
            return self._respond(500, "5.5.2 Error: line too long", verb_text)
        if not raw.endswith(b"\r\n"):
            self._violation("bare_lf", "command line ended by a bare LF: %s"
                            % self._safe(raw, verb_text))
            return self._respond(500, "5.5.2 Error: bare <LF> received", verb_text)
        if b"\r" in raw[:-2]:
            self._violation("bare_cr", "bare CR in command: %s" % self._safe(raw, verb_text))
            return self._respond(500, "5.5.2 Error: bare <CR> received", verb_text)
        if b"\0" in raw:
            self._violation("nul", "NUL in command: %s" % self._safe(raw, verb_text))
            return self._respond(500, "5.5.2 Error: NUL in command", verb_text)
        text = raw[:-2].decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        arg = arg.rstrip(" ")
        if self.no_service and verb != "QUIT":
            return self._respond(503, "5.5.1 Error: no SMTP service here", verb)
        handler = getattr(self, "_cmd_" + verb, None) if verb.isalpha() else None
        if handler is None:
            self._violation("unknown_command", "unrecognised command %r" % verb[:40])
            return self._respond(500, "5.5.2 Error: command not recognized", verb)
        handler(arg)

    def _line_limit(self, verb):
        limit = self.fake.command_line_limit
        if verb == "MAIL":
            if "SIZE" in self.advertised:
                limit += SIZE_PARAM_ALLOWANCE
            if "AUTH" in self.advertised:
                limit += AUTH_PARAM_ALLOWANCE
        return limit

    @staticmethod
    def _redact(raw, verb):
        if verb == "AUTH":
            parts = _printable(raw).split(" ")
            if len(parts) > 2 and parts[2] != "=":
                return " ".join(parts[:2] + ["<redacted>"])
        return _printable(raw)

    @staticmethod
    def _safe(raw, verb):
        return _Session._redact(raw, verb)[:200]

    def _override(self, verb):
        return self.fake._take_reply(("command", verb))

    def _need_ehlo(self, verb):
        if self.ehlo_done:
            return False
        why = "after TLS started, " if self.tls and self.fake.mode == "starttls" else ""
        self._violation("sequence", "%s%s before EHLO/HELO" % (why, verb))
        self._respond(503, "5.5.1 Error: send HELO/EHLO first", verb)
        return True

    def _cmd_EHLO(self, arg, verb="EHLO"):
        self._drop_if("ehlo")
        if not arg or not DOMAIN_RE.fullmatch(arg):
            self._violation("syntax", "%s needs a domain or address literal, got %r"
                            % (verb, arg[:80]))
            return self._respond(501, "5.5.4 Syntax: %s hostname" % verb, verb, "ehlo")
        over = self._override(verb)
        if over:
            return self._respond(over[0], over[1], verb, "ehlo")
        self._reset_tx()
        self.helo = arg
        self.ehlo_done = True
        self.esmtp = verb == "EHLO"
        self.fake._set_conn(self.conn, helo=arg)
        if verb == "HELO":
            self.advertised = set()
            return self._respond(250, self.fake.hostname, verb, "ehlo")
        exts = self.fake._ehlo_extensions(self.tls)
        self.advertised = {e.split(" ", 1)[0].upper() for e in exts}
        lines = ["%s Hello %s" % (self.fake.hostname, arg)] + exts
        self._respond(250, lines, verb, "ehlo")

    def _cmd_HELO(self, arg):
        self._cmd_EHLO(arg, "HELO")

    def _cmd_STARTTLS(self, arg):
        self._drop_if("starttls")
        fake = self.fake
        if self.tls:
            self._violation("sequence", "STARTTLS while TLS is already active")
            return self._respond(503, "5.5.1 Error: TLS already active", "STARTTLS")
        if fake.mode != "starttls" or not fake.offer_starttls:
            return self._respond(502, "5.5.1 Error: command not implemented", "STARTTLS")
        if arg:
            self._violation("syntax", "STARTTLS takes no argument")
            return self._respond(501, "5.5.4 Syntax: STARTTLS", "STARTTLS")
        if self._need_ehlo("STARTTLS"):
            return
        if "STARTTLS" not in self.advertised:
            self._violation("not_advertised", "STARTTLS after HELO (not advertised)")
            return self._respond(503, "5.5.1 Error: send EHLO first", "STARTTLS")
        over = self._override("STARTTLS")
        if over:
            return self._respond(over[0], over[1], "STARTTLS", "starttls")
        fake._apply_delay("starttls")
        if self._input_pending(fake.sync_wait):
            self._violation("starttls_injection",
                            "%d octets pipelined after STARTTLS (discarded)" % len(self.buf))
            self.buf.clear()
        self._reply(220, "2.0.0 Ready to start TLS")
        self._drop_if("tls_handshake")
        self._start_tls()

    def _start_tls(self):
        raw = self.sock
        raw.settimeout(self.fake.handshake_timeout)
        try:
            first = raw.recv(64, socket.MSG_PEEK)
        except TimeoutError:
            raise _Timeout()
        except OSError:
            first = b""
        if not first:
            raise _Closed("client_closed")
        if first[0] != 0x16:    # a TLS handshake record starts with 22
            self._violation("plaintext_after_starttls",
                            "plaintext instead of a TLS handshake after 220: %r" % first[:20])
            raise _Closed("plaintext_after_starttls")
        self._handshake(raw)
        self.buf.clear()
        self.eof = False
        self._reset_session()      # RFC 3207 4.2: forget everything

    def _cmd_AUTH(self, arg):
        self._drop_if("auth")
        fake = self.fake
        if self._need_ehlo("AUTH"):
            return
        if not self.esmtp:
            self._violation("sequence", "AUTH after HELO (needs EHLO)")
            return self._respond(503, "5.5.1 Error: send EHLO first", "AUTH")
        if self.auth_user is not None:
            self._violation("sequence", "AUTH after successful authentication")
            return self._respond(503, "5.5.1 Error: already authenticated", "AUTH")
        if self.tx is not None:
            self._violation("sequence", "AUTH during a mail transaction")
            return self._respond(503, "5.5.1 Error: MAIL transaction in progress", "AUTH")
        parts = arg.split(" ")
        mech = parts[0].upper()
        if not mech or len(parts) > 2:
            self._violation("syntax", "AUTH mechanism [initial-response]")
            return self._respond(501, "5.5.4 Syntax: AUTH mechanism [initial-response]", "AUTH")
        initial = parts[1] if len(parts) == 2 else None
        if "AUTH" not in self.advertised:
            if fake.auth_mechanisms and not self.tls:
                self._violation("plaintext_auth", "AUTH %s over a connection without TLS" % mech)
                if fake.mode == "starttls" and fake.offer_starttls:
                    return self._respond(530, "5.7.0 Must issue a STARTTLS command first", "AUTH")
                return self._respond(538, "5.7.11 Encryption required for requested "
                                     "authentication mechanism", "AUTH")
            self._violation("not_advertised", "AUTH when it was not advertised")
            return self._respond(502, "5.5.1 Error: authentication not enabled", "AUTH")
        if mech not in [m.upper() for m in fake.auth_mechanisms]:
            self._violation("not_advertised", "AUTH mechanism %s not advertised" % mech[:40])
            return self._respond(504, "5.5.4 Unrecognized authentication type", "AUTH")
        over = self._override("AUTH")
        if over:
            fake._auth_event(self.conn, mech, None, False, self.tls, "%d %s" % over)
            return self._respond(over[0], over[1], "AUTH", "auth")
        getattr(self, "_auth_" + mech)(initial)

    # SASL helpers: each returns None when the exchange already ended (a
    # reply has been sent).

    def _challenge(self, payload):
        """Sends 334 <payload>, returns the client's response line (text)."""
        if not self._sync_check(True, "AUTH"):
            raise _Closed("sync")
        self._reply(334, payload)
        line, overflow = self._readline(READ_CAP)
        if line is None:
            raise _Closed("client_closed")
        shown = line.strip(b"\r\n")
        self.fake._record_command(self.conn, shown.decode("ascii", "replace")
                                  if shown in (b"", b"*") else "<redacted>")
        if overflow or len(line) > SASL_LINE_LIMIT:
            self._violation("command_too_long",
                            "SASL response line over %d octets" % SASL_LINE_LIMIT)
            self._respond(500, "5.5.6 Authentication Exchange line is too long", "AUTH")
            return None
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            self._violation("bare_lf" if not line.endswith(b"\r\n") else "bare_cr",
                            "SASL response line not ended by CRLF")
            self._respond(500, "5.5.2 Error: bare <CR> or <LF> received", "AUTH")
            return None
        text = line[:-2].decode("ascii", "replace")
        if text == "*":
            self._respond(501, "5.7.0 Authentication aborted", "AUTH")
            return None
        return text

    def _decode(self, text, mech):
        if text == "=":
            return b""
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            self._violation("auth_protocol", "%s response is not valid base64" % mech)
            self._respond(501, "5.5.2 Cannot decode response", "AUTH")
            return None

    def _auth_done(self, mech, user, ok,
                   fail_reply=(535, "5.7.8 Authentication credentials invalid")):
        fake = self.fake
        if ok:
            code, text = 235, "2.7.0 Authentication successful"
        else:
            code, text = fail_reply
        fake._auth_event(self.conn, mech, user, ok, self.tls, "%d %s" % (code, text))
        if ok:
            self.auth_user = user
            self.auth_mech = mech
            fake._set_conn(self.conn, auth_user=user, auth_mechanism=mech)
        self._respond(code, text, "AUTH", "auth")

    def _auth_PLAIN(self, initial):
        text = initial if initial is not None else self._challenge("")
        if text is None:
            return
        data = self._decode(text, "PLAIN")
        if data is None:
            return
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            self._violation("auth_protocol", "PLAIN message is not authzid NUL authcid NUL passwd")
            return self._auth_done("PLAIN", None, False)
        authz, authc, password = (p.decode("utf-8", "replace") for p in parts)
        ok = self.fake._check_password(authc, password) and authz in ("", authc)
        self._auth_done("PLAIN", authc, ok)

    def _auth_LOGIN(self, initial):
        text = initial if initial is not None else self._challenge("VXNlcm5hbWU6")
        if text is None:
            return
        user = self._decode(text, "LOGIN")
        if user is None:
            return
        text = self._challenge("UGFzc3dvcmQ6")
        if text is None:
            return
        password = self._decode(text, "LOGIN")
        if password is None:
            return
        user = user.decode("utf-8", "replace")
        ok = self.fake._check_password(user, password.decode("utf-8", "replace"))
        self._auth_done("LOGIN", user, ok)

    def _auth_XOAUTH2(self, initial):
        fake = self.fake
        text = initial if initial is not None else self._challenge("")
        if text is None:
            return
        data = self._decode(text, "XOAUTH2")
        if data is None:
            return
        m = _XOAUTH2_RE.fullmatch(data)
        if not m:
            self._violation("auth_protocol", "XOAUTH2 response is not "
                            "user=U ^A auth=Bearer T ^A ^A")
            fake._auth_event(self.conn, "XOAUTH2", None, False, self.tls, "501")
            return self._respond(501, "5.5.4 Malformed XOAUTH2 response", "AUTH")
        user = m.group(1).decode("utf-8", "replace")
        token = m.group(2).decode("utf-8", "replace")
        if fake._check_token(user, token):
            return self._auth_done("XOAUTH2", user, True)
        if fake.xoauth2_errors == "microsoft":
            return self._auth_done("XOAUTH2", user, False,
                                   (535, "5.7.3 Authentication unsuccessful"))
        err = json.dumps({"status": "401", "schemes": "bearer mac", "scope": fake.xoauth2_scope},
                         separators=(",", ":"))
        answer = self._challenge(base64.b64encode(err.encode()).decode("ascii"))
        if answer is None:
            fake._auth_event(self.conn, "XOAUTH2", user, False, self.tls, "501 aborted")
            return
        if answer != "":
            self._violation("auth_protocol", "non-empty answer to the XOAUTH2 error challenge")
        self._auth_done("XOAUTH2", user, False,
                        (535, "5.7.8 Username and Password not accepted"))

    # ---- transaction ----------------------------------------------------

    def _parse_path(self, arg, keyword, verb):
        """Splits 'FROM:<path> params'. Returns (path, params) or None after
        replying."""
        prefix = keyword + ":"
        if not arg.upper().startswith(prefix):
            self._violation("syntax", "%s without %s" % (verb, prefix))
            self._respond(501, "5.5.4 Syntax: %s %s<address>" % (verb, prefix), verb)
            return None
        rest = arg[len(prefix):]
        if rest.startswith(" "):
            self._violation("syntax", "space after %s %s (RFC 5321 4.1.1.2)" % (verb, prefix))
            self._respond(501, "5.5.4 Syntax: %s %s<address>, no space" % (verb, prefix), verb)
            return None
        m = re.match(r"<([^<>]*)>(.*)$", rest)
        if not m or (m.group(2) and not m.group(2).startswith(" ")):
            self._violation("syntax", "%s path not in angle brackets" % verb)
            self._respond(501, "5.5.4 Syntax: %s %s<address>" % (verb, prefix), verb)
            return None
        params = {}
        for item in m.group(2).split(" ")[1:]:
            pm = _PARAM_RE.match(item)
            if not pm or pm.group(1).upper() in params:
                self._violation("syntax", "bad or repeated %s parameter %r" % (verb, item[:60]))
                self._respond(501, "5.5.4 Syntax error in parameters", verb)
                return None
            params[pm.group(1).upper()] = pm.group(2)
        return m.group(1), params

    def _check_address(self, path, verb, allow_null, smtputf8):
        """Returns the mailbox (source route removed) or None after replying."""
        bad_code = "5.1.7" if verb == "MAIL" else "5.1.3"
        if path == "":
            if allow_null:
                return ""
            self._violation("syntax", "%s with a null path" % verb)
            self._respond(501, "%s Bad recipient address syntax" % bad_code, verb)
            return None
        if any(ord(c) > 127 for c in path) and not smtputf8:
            self._violation("smtputf8", "non-ASCII address without SMTPUTF8: %r" % path[:80])
            self._respond(553, "5.6.7 SMTPUTF8 is required for this address", verb)
            return None
        route = _SOURCE_ROUTE_RE.match(path)
        if route:
            self._violation("source_route", "%s path has a source route" % verb)
            path = path[route.end():]
        if verb == "RCPT" and path.lower() == "postmaster":
            return path
        local, at, domain = path.rpartition("@")
        local_re = _LOCAL_U8_RE if smtputf8 else _LOCAL_RE
        domain_re = _DOMAIN_U8_RE if smtputf8 else DOMAIN_RE
        if (not at or not local_re.fullmatch(local) or not domain_re.fullmatch(domain)
                or len(local.encode()) > 64 or len(domain.encode()) > 255
                or len(path.encode()) + 2 > 256):
            self._violation("syntax", "bad %s address %r" % (verb, path[:80]))
            what = "sender" if verb == "MAIL" else "recipient"
            self._respond(501, "%s Bad %s address syntax" % (bad_code, what), verb)
            return None
        return path

    def _out_of_order(self, verb, detail):
        """503 for a transaction command without its predecessor; a
        violation unless an earlier refusal in the same pipelined group
        explains it."""
        if not (self.mail_attempted and self._pipelining()):
            self._violation("sequence", detail)
        self._respond(503, "5.5.1 Error: %s" % detail, verb)

    def _cmd_MAIL(self, arg):
        self._drop_if("mail")
        fake = self.fake
        if self._need_ehlo("MAIL"):
            return
        if self.tx is not None:
            self._violation("sequence", "MAIL inside a mail transaction")
            return self._respond(503, "5.5.1 Error: nested MAIL command", "MAIL")
        self.mail_attempted = True
        parsed = self._parse_path(arg, "FROM", "MAIL")
        if parsed is None:
            return
        path, params = parsed
        size = body = None
        for key, value in params.items():
            need = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8", "AUTH": "AUTH",
                    "RET": "DSN", "ENVID": "DSN"}.get(key)
            if need is None or need not in self.advertised:
                self._violation("not_advertised", "MAIL parameter %s not advertised" % key)
                return self._respond(555, "5.5.4 Unsupported option: %s" % key, "MAIL")
            if key == "SIZE":
                if not value or not value.isdigit():
                    self._violation("syntax", "SIZE=%s" % value)
                    return self._respond(501, "5.5.4 Bad SIZE parameter", "MAIL")
                size = int(value)
            elif key == "BODY":
                if not value or value.upper() not in ("7BIT", "8BITMIME"):
                    self._violation("not_advertised" if value else "syntax", "BODY=%s" % value)
                    return self._respond(555, "5.5.4 Unsupported BODY type", "MAIL")
                body = value.upper()
            elif key == "SMTPUTF8" and value is not None:
                self._violation("syntax", "SMTPUTF8 takes no value")
                return self._respond(501, "5.5.4 Bad SMTPUTF8 parameter", "MAIL")
        smtputf8 = "SMTPUTF8" in params
        mailbox = self._check_address(path, "MAIL", True, smtputf8)
        if mailbox is None:
            return
        limit = fake.max_message_size
        if size is not None and limit and size > limit:
            if "SIZE" in self.advertised:
                self._violation("size", "SIZE=%d over the advertised %d" % (size, limit))
            return self._respond(552, "5.3.4 Message size exceeds fixed maximum message size",
                                 "MAIL", "mail")
        if fake.require_tls and not self.tls:
            return self._respond(530, "5.7.0 Must issue a STARTTLS command first", "MAIL", "mail")
        if fake.require_auth and self.auth_user is None:
            return self._respond(530, "5.7.0 Authentication required", "MAIL", "mail")
        scripted = fake._take_reply(("mail", mailbox.lower())) or fake._take_reply(("mail", "*"))
        code, text = scripted or (250, "2.1.0 Sender <%s> OK" % mailbox)
        if 200 <= code < 300:
            self.tx = _Tx(mail_from=mailbox, params=params, declared_size=size, body=body,
                          smtputf8=smtputf8)
        self._respond(code, text, "MAIL", "mail")

    def _cmd_RCPT(self, arg):
        self._drop_if("rcpt")
        fake = self.fake
        if self._need_ehlo("RCPT"):
            return
        tx = self.tx
        if tx is None:
            return self._out_of_order("RCPT", "RCPT without MAIL")
        parsed = self._parse_path(arg, "TO", "RCPT")
        if parsed is None:
            return
        path, params = parsed
        for key in params:
            if key not in ("NOTIFY", "ORCPT") or "DSN" not in self.advertised:
                self._violation("not_advertised", "RCPT parameter %s not advertised" % key)
                return self._respond(555, "5.5.4 Unsupported option: %s" % key, "RCPT")
        mailbox = self._check_address(path, "RCPT", False, tx.smtputf8)
        if mailbox is None:
            return
        tx.rcpt_attempts += 1
        if len(tx.rcpts) >= fake.max_recipients:
            tx.rejected.append((mailbox, 452, "4.5.3 Too many recipients"))
            return self._respond(452, "4.5.3 Error: too many recipients", "RCPT", "rcpt")
        scripted = fake._take_reply(("rcpt", mailbox.lower())) or fake._take_reply(("rcpt", "*"))
        code, text = scripted or (250, "2.1.5 Recipient <%s> OK" % mailbox)
        if 200 <= code < 300:
            tx.rcpts.append(mailbox)
            tx.rcpt_params[mailbox] = params
        else:
            tx.rejected.append((mailbox, code, text))
        self._respond(code, text, "RCPT", "rcpt")

    def _data_precheck(self, verb):
        """Common checks of DATA and BDAT. Returns (code, text) of a refusal
        (already counted as violation where it is one) or None."""
        tx = self.tx
        if tx is None:
            if not (self.mail_attempted and self._pipelining()):
                self._violation("sequence", "%s without MAIL" % verb)
            return 503, "5.5.1 Error: need MAIL command"
        if tx.rcpt_attempts == 0:
            self._violation("sequence", "%s without RCPT" % verb)
            return 503, "5.5.1 Error: need RCPT command"
        if not tx.rcpts:
            return 554, "5.5.1 Error: no valid recipients"
        return None

    def _cmd_DATA(self, arg):
        self._drop_if("data")
        fake = self.fake
        if self._need_ehlo("DATA"):
            return
        if arg:
            self._violation("syntax", "DATA takes no argument")
            return self._respond(501, "5.5.4 Syntax: DATA", "DATA")
        if self.tx is not None and self.tx.used_bdat:
            self._violation("sequence", "DATA after BDAT in the same transaction")
            return self._respond(503, "5.5.1 Error: DATA after BDAT", "DATA")
        refusal = self._data_precheck("DATA")
        if refusal:
            if refusal[0] == 554:
                self._reset_tx()       # the transaction is over; MAIL may follow
            return self._respond(refusal[0], refusal[1], "DATA")
        over = self._override("DATA")
        if over:
            self._reset_tx()
            return self._respond(over[0], over[1], "DATA", "data")
        self._respond(354, "Send message content; end with <CRLF>.<CRLF>", "DATA", "data")
        data, issues = self._read_data()
        self._finish_message(data, issues, "DATA")

    def _read_data(self):
        data = bytearray()
        issues = {}
        prev_crlf = True           # the DATA line ended with CRLF
        lineno = 0
        while True:
            line, overflow = self._readline(DATA_LINE_CAP)
            if line is None:
                raise _Closed("client_closed_in_data")
            lineno += 1
            if prev_crlf and line == b".\r\n":
                break
            self._scan_line(line, overflow, lineno, issues)
            prev_crlf = line.endswith(b"\r\n")
            if line.startswith(b"."):
                line = line[1:]
            data += line
        self.fake._transcript(self.conn, "C", ["<%d octets of message content>" % len(data), "."])
        return bytes(data), issues

    @staticmethod
    def _scan_line(line, overflow, lineno, issues):
        crlf = line.endswith(b"\r\n")
        if overflow or len(line) > TEXT_LINE_LIMIT:
            issues.setdefault("line_too_long", "line %d has %s octets (limit %d)" % (
                lineno, "more than %d" % DATA_LINE_CAP if overflow else len(line), TEXT_LINE_LIMIT))
        if line.endswith(b"\n") and not crlf:
            issues.setdefault("bare_lf", "line %d ended by a bare LF" % lineno)
        body = line[:-2] if crlf else line.rstrip(b"\n")
        if b"\r" in body:
            issues.setdefault("bare_cr", "bare CR in line %d" % lineno)
        if b"\0" in body:
            issues.setdefault("nul", "NUL in line %d" % lineno)

    def _scan_content(self, data):
        issues = {}
        lines = data.split(b"\n")
        for n, piece in enumerate(lines):
            last = n == len(lines) - 1
            if last and not piece:
                break
            line = piece if last else piece + b"\n"
            self._scan_line(line, False, n + 1, issues)
        return issues

    def _cmd_BDAT(self, arg):
        fake = self.fake
        m = re.fullmatch(r"(\d{1,18})( +LAST)?", arg, re.I)
        if not m:
            self._violation("syntax", "BDAT chunk-size [LAST], got %r" % arg[:40])
            self._reply(501, "5.5.4 Syntax: BDAT chunk-size [LAST]")
            raise _Closed("bdat_syntax")
        size, last = int(m.group(1)), bool(m.group(2))
        first_chunk = self.tx is None or not self.tx.used_bdat
        if first_chunk:
            self._drop_if("data")
        chunk = self._read_exact(size)
        if chunk is None:
            raise _Closed("client_closed_in_bdat")
        fake._transcript(self.conn, "C", ["<%d octets of BDAT content>" % size])
        if "CHUNKING" not in self.advertised:
            self._violation("not_advertised", "BDAT without CHUNKING advertised")
            return self._respond(502, "5.5.1 Error: command not implemented", "BDAT")
        if not self.ehlo_done:
            return self._need_ehlo("BDAT")
        refusal = self._data_precheck("BDAT")
        tx = self.tx
        if refusal:
            if tx is not None and last:
                self._reset_tx()
            return self._respond(refusal[0], refusal[1], "BDAT")
        if tx.bdat_failed:
            if last:
                self._reset_tx()
            return self._respond(503, "5.5.1 Error: transaction already failed", "BDAT")
        tx.used_bdat = True
        tx.chunks += chunk
        limit = fake.max_message_size
        if limit and len(tx.chunks) > limit:
            tx.bdat_failed = True
            if "SIZE" in self.advertised:
                self._violation("size", "BDAT content over the advertised SIZE %d" % limit)
            tx.chunks = bytearray()
            if last:
                self._reset_tx()
            return self._respond(552, "5.3.4 Message size exceeds fixed maximum message size",
                                 "BDAT")
        if not last:
            return self._respond(250, "2.0.0 %d octets received" % size, "BDAT")
        data = bytes(tx.chunks)
        self._finish_message(data, self._scan_content(data), "BDAT")

    def _finish_message(self, data, issues, transfer):
        fake = self.fake
        tx = self.tx
        kinds = []
        for kind, detail in issues.items():
            self._violation(kind, "message content: " + detail)
            kinds.append(kind)
        if tx.body != "8BITMIME" and any(b > 127 for b in data):
            self._violation("8bit", "8-bit content without BODY=8BITMIME")
            kinds.append("8bit")
        if "bare_lf" in issues or "bare_cr" in issues:
            code, text = 550, "5.5.2 Error: bare <CR> or <LF> in message content"
        elif "line_too_long" in issues:
            code, text = 500, "5.5.2 Error: message content line too long"
        elif "nul" in issues:
            code, text = 554, "5.6.0 Error: NUL in message content"
        elif fake.max_message_size and len(data) > fake.max_message_size:
            if "SIZE" in self.advertised:
                self._violation("size", "message of %d octets over the advertised SIZE %d" % (
                    len(data), fake.max_message_size))
                kinds.append("size")
            code, text = 552, "5.3.4 Message size exceeds fixed maximum message size"
        else:
            code = text = None
        msg = fake._new_message(self, tx, data, transfer, kinds)
        if code is None:
            code, text = fake._take_reply(("data",)) or (
                250, "2.0.0 Ok: queued as %s" % msg.queue_id)
        self._reset_tx()
        if fake._take_fault("drop", "after_dot_before_reply"):
            fake._record_message(msg, self.conn, None, None, False)
            raise _Closed("drop:after_dot_before_reply")
        fake._apply_delay("dot")
        if not self._sync_check(not self._pipelining(), "the end of message content"):
            fake._record_message(msg, self.conn, 554,
                                 "5.5.0 Error: SMTP protocol synchronization", False)
            raise _Closed("sync")
        try:
            self._reply(code, text)
        except _Closed:
            fake._record_message(msg, self.conn, code, text, False)
            raise
        fake._record_message(msg, self.conn, code, text, 200 <= code < 300)
        if code == 421:
            raise _Closed("reply_421")
        self._drop_if("after_reply")

    # ---- the rest -------------------------------------------------------

    def _cmd_RSET(self, arg):
        self._drop_if("rset")
        if arg:
            self._violation("syntax", "RSET takes no argument")
            return self._respond(501, "5.5.4 Syntax: RSET", "RSET")
        over = self._override("RSET")
        if over:
            return self._respond(over[0], over[1], "RSET", "rset")
        self._reset_tx()
        self._respond(250, "2.0.0 Reset state", "RSET", "rset")

    def _cmd_NOOP(self, arg):
        over = self._override("NOOP")
        if over:
            return self._respond(over[0], over[1], "NOOP", "noop")
        self._respond(250, "2.0.0 OK", "NOOP", "noop")

    def _cmd_QUIT(self, arg):
        self._drop_if("quit")
        if arg:
            self._violation("syntax", "QUIT takes no argument")
            return self._respond(501, "5.5.4 Syntax: QUIT", "QUIT")
        over = self._override("QUIT")
        if over and over[0] != 221:
            return self._respond(over[0], over[1], "QUIT", "quit")
        self._respond(221, (over or (0, "2.0.0 Bye"))[1], "QUIT", "quit")
        raise _Closed("quit")

    def _cmd_VRFY(self, arg):
        self._respond(502, "5.5.1 VRFY command is disabled", "VRFY")

    def _cmd_EXPN(self, arg):
        self._respond(502, "5.5.1 EXPN command is disabled", "EXPN")

    def _cmd_HELP(self, arg):
        self._respond(214, "2.0.0 See RFC 5321", "HELP")


# --------------------------------------------------------------------------
# The fake


class FakeSmtpServer(FakeBase):
    """An upstream SMTP server on 127.0.0.1 (see the module doc).

    mode: "starttls" (plaintext, STARTTLS offered), "implicit" (TLS from the
    first byte, as on port 465) or "plain" (no TLS at all). All keyword
    settings are attributes too and may be changed while it runs."""

    def __init__(self, ca=None, mode="starttls", host="127.0.0.1", port=0,
                 hostname="smarthost.test", *, offer_starttls=True, auth_before_tls=False,
                 require_auth=False, require_tls=False, auth_mechanisms=DEFAULT_MECHANISMS,
                 extensions=DEFAULT_EXTENSIONS, chunking=False, max_message_size=DEFAULT_MAX_SIZE,
                 max_recipients=100, max_connections=None, xoauth2_errors="google",
                 xoauth2_scope="https://mail.google.com/", sync_action="reject", sync_wait=0.0,
                 pregreet_wait=0.0, idle_timeout=60.0, handshake_timeout=10.0,
                 hard_error_limit=20, command_line_limit=COMMAND_LINE_LIMIT, extra_ehlo=(),
                 min_tls_version=ssl.TLSVersion.TLSv1_2, max_tls_version=None, verbose=False):
        if mode not in ("starttls", "implicit", "plain"):
            raise ValueError("mode must be starttls, implicit or plain")
        if sync_action not in ("reject", "continue"):
            raise ValueError("sync_action must be reject or continue")
        if xoauth2_errors not in ("google", "microsoft"):
            raise ValueError("xoauth2_errors must be google or microsoft")
        super().__init__(ca, tls=mode != "plain")
        self.mode = mode
        self.host = host
        self._want_port = port
        self.hostname = hostname
        self.offer_starttls = offer_starttls
        self.auth_before_tls = auth_before_tls
        self.require_auth = require_auth
        self.require_tls = require_tls
        self.auth_mechanisms = tuple(auth_mechanisms)
        self.extensions = tuple(extensions)
        self.chunking = chunking
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.max_connections = max_connections
        self.xoauth2_errors = xoauth2_errors
        self.xoauth2_scope = xoauth2_scope
        self.sync_action = sync_action
        self.sync_wait = sync_wait
        self.pregreet_wait = pregreet_wait
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.hard_error_limit = hard_error_limit
        self.command_line_limit = command_line_limit
        self.extra_ehlo = tuple(extra_ehlo)
        self.min_tls_version = min_tls_version
        self.max_tls_version = max_tls_version
        self.verbose = verbose
        self.port = None

        self._listener = None
        self._accept_thread = None
        self._stopping = threading.Event()
        self._sessions = {}            # connection id -> (_Session, thread)
        self._ctx = None
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)

        self._users = {}               # name -> password
        self._tokens = {}              # token -> (user, expires_at or None)
        self._scripts = {}             # key tuple -> _Script
        self._faults = []

        self._messages = []
        self._connections = []
        self._violations = []
        self._auth_events = []
        self._active = 0
        self._max_active = 0

    # ---- lifecycle ------------------------------------------------------

    def start(self):
        if self.mode != "plain":
            self._ctx = self._make_context()
        self._listener = socket.create_server((self.host, self._want_port), backlog=128)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name="fake-smtp-accept")
        self._accept_thread.start()
        return self

    def stop(self):
        if self._listener is not None:
            self._stopping.set()
            try:
                self._listener.shutdown(socket.SHUT_RDWR)    # wakes accept() on Linux
            except OSError:
                pass
            self._accept_thread.join(timeout=5)
            try:
                self._listener.close()
            except OSError:
                pass
            self._listener = None
            with self._lock:
                sessions = list(self._sessions.values())
            for session, _ in sessions:
                session.abort()
            for _, thread in sessions:
                thread.join(timeout=5)
        self._release_ca()

    @property
    def address(self):
        return (self.host, self.port)

    def _make_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_tls_version
        if self.max_tls_version is not None:
            ctx.maximum_version = self.max_tls_version
        ctx.load_cert_chain(str(self.ca.cert_file), str(self.ca.key_file))
        return ctx

    def _ssl_context(self):
        if self._ctx is None:
            self._ctx = self._make_context()
        return self._ctx

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            sock.settimeout(self.idle_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = ConnectionRecord(id=next(self._ids), peer=peer, opened_at=time.time())
                self._connections.append(conn)
                self._active += 1
                self._max_active = max(self._max_active, self._active)
                session = _Session(self, sock, conn)
                thread = threading.Thread(target=session.run, daemon=True,
                                          name="fake-smtp-conn-%d" % conn.id)
                self._sessions[conn.id] = (session, thread)
                self._cond.notify_all()
            thread.start()

    # ---- accounts -------------------------------------------------------

    def add_user(self, name, password):
        """An account for AUTH PLAIN and LOGIN."""
        with self._lock:
            self._users[name] = password

    def remove_user(self, name):
        with self._lock:
            self._users.pop(name, None)

    def add_oauth_token(self, user, token, expires_in=None):
        """An access token that XOAUTH2 accepts for `user` (for `expires_in`
        seconds, or until revoked)."""
        with self._lock:
            self._tokens[token] = (user, None if expires_in is None else time.time() + expires_in)

    def revoke_oauth_token(self, token=None):
        """Revokes one token, or all of them."""
        with self._lock:
            if token is None:
                self._tokens.clear()
            else:
                self._tokens.pop(token, None)

    def _check_password(self, user, password):
        with self._lock:
            return user in self._users and self._users[user] == password

    def set_token_checker(self, checker):
        """Lets `checker(user, token) -> bool` decide XOAUTH2 tokens (a token
        issued by a fake identity provider) instead of add_oauth_token's list.
        None goes back to the list."""
        with self._lock:
            self._token_checker = checker

    def _check_token(self, user, token):
        checker = getattr(self, "_token_checker", None)
        if checker is not None:
            return bool(checker(user, token))
        with self._lock:
            entry = self._tokens.get(token)
            return (entry is not None and entry[0].lower() == user.lower()
                    and (entry[1] is None or entry[1] > time.time()))

    # ---- scripted replies -----------------------------------------------

    def _script(self, key, code, text, times):
        if not (200 <= int(code) <= 599):
            raise ValueError("bad reply code %r" % code)
        with self._lock:
            self._scripts.setdefault(key, _Script()).add(int(code), text or _default_text(code),
                                                         times)

    def greeting_reply(self, code, text=None, times=None):
        """The banner instead of 220: a 4xx (e.g. 421 4.3.2) is sent and the
        connection closed; a 554 leaves a session that answers 503 to all
        but QUIT (RFC 5321 3.1)."""
        self._script(("greeting",), code, text, times)

    def mail_reply(self, code, text=None, times=None, sender=None):
        """The reply to MAIL (for one sender, or any). A 2xx opens the
        transaction, anything else refuses it; 421 also closes."""
        self._script(("mail", (sender or "*").lower()), code, text, times)

    def rcpt_reply(self, address, code, text=None, times=None):
        """The reply to RCPT TO:<address> (address "*" for any other), e.g.
        (550, "5.1.1 No such user"), (450, "4.2.1 Mailbox busy")."""
        self._script(("rcpt", address.lower()), code, text, times)

    def data_reply(self, code, text=None, times=None):
        """The reply after the final dot (or BDAT LAST). With `times`, the
        reply joins a queue consumed one per message; without, it becomes
        the reply used whenever the queue is empty."""
        self._script(("data",), code, text, times)

    def command_reply(self, verb, code, text=None, times=None):
        """A failure reply for EHLO, HELO, STARTTLS, AUTH (before the
        exchange), DATA (instead of 354), RSET, NOOP or QUIT; the command
        then has no effect. 421 closes the connection."""
        verb = verb.upper()
        if verb not in OVERRIDABLE:
            raise ValueError("command_reply for one of " + ", ".join(OVERRIDABLE))
        if 200 <= code < 400 and verb != "QUIT":
            raise ValueError("command_reply is for failure replies")
        self._script(("command", verb), code, text, times)

    def clear_replies(self):
        with self._lock:
            self._scripts.clear()

    def _take_reply(self, key):
        with self._lock:
            script = self._scripts.get(key)
            return script.take() if script else None

    # ---- faults ---------------------------------------------------------

    def drop_at(self, stage, times=1, skip=0, reset=False):
        """Closes the connection without a reply when it reaches `stage`
        (one of DROP_STAGES), `times` times (None: always) after letting
        `skip` occurrences pass. "after_dot_before_reply" records the message
        as received but unacknowledged. `reset` sends a TCP RST."""
        if stage not in DROP_STAGES:
            raise ValueError("stage must be one of " + ", ".join(DROP_STAGES))
        with self._lock:
            self._faults.append(_Fault("drop", stage, times=times, skip=skip, reset=reset))

    def delay(self, stage, seconds, times=None, skip=0):
        """Waits `seconds` before the reply of `stage` (one of DELAY_STAGES;
        "dot" is the reply to the final dot). A greeting delay is also a
        window in which input from the client is a pregreeting violation."""
        if stage == "after_dot_before_reply":
            stage = "dot"
        if stage not in DELAY_STAGES:
            raise ValueError("stage must be one of " + ", ".join(DELAY_STAGES))
        with self._lock:
            self._faults.append(_Fault("delay", stage, seconds=seconds, times=times, skip=skip))

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def _take_fault(self, kind, stage):
        with self._lock:
            for f in list(self._faults):
                if f.kind != kind or f.stage != stage:
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    continue
                if f.times is not None:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                return f
            return None

    def _take_delay(self, stage):
        f = self._take_fault("delay", stage)
        return f.seconds if f else 0.0

    def _apply_delay(self, stage):
        seconds = self._take_delay(stage)
        if seconds > 0:
            time.sleep(seconds)

    # ---- EHLO -----------------------------------------------------------

    def extensions_upper(self):
        return {e.split(" ", 1)[0].upper() for e in self.extensions}

    def _ehlo_extensions(self, tls):
        out = []
        for ext in self.extensions:
            kw = ext.split(" ", 1)[0].upper()
            if kw in ("STARTTLS", "AUTH", "CHUNKING"):
                continue
            if kw == "SIZE":
                out.append("SIZE %d" % self.max_message_size if self.max_message_size else "SIZE")
            else:
                out.append(ext)
        if self.chunking or "CHUNKING" in self.extensions_upper():
            out.append("CHUNKING")
        if self.mode == "starttls" and not tls and self.offer_starttls:
            out.append("STARTTLS")
        if self.auth_mechanisms and (tls or self.auth_before_tls):
            out.append("AUTH " + " ".join(self.auth_mechanisms))
        out.extend(self.extra_ehlo)
        return out

    # ---- records (called by sessions) -------------------------------------

    def _over_connection_limit(self, conn):
        with self._lock:
            return self.max_connections is not None and self._active > self.max_connections

    def _set_conn(self, conn, **values):
        with self._lock:
            for k, v in values.items():
                setattr(conn, k, v)

    def _record_command(self, conn, text):
        with self._lock:
            conn.commands.append(text)
            conn.transcript.append(("C", text))
        if self.verbose:
            sys.stderr.write("fake_smtp[%d] C: %s\n" % (conn.id, text))

    def _transcript(self, conn, direction, lines):
        with self._lock:
            conn.transcript.extend((direction, l) for l in lines)
        if self.verbose:
            for l in lines:
                sys.stderr.write("fake_smtp[%d] %s: %s\n" % (conn.id, direction, l))

    def _add_violation(self, conn, kind, detail):
        v = Violation(kind=kind, detail=detail, connection_id=conn.id, time=time.time())
        with self._lock:
            self._violations.append(v)
            conn.violations.append(kind)
            self._cond.notify_all()
        if self.verbose:
            sys.stderr.write("fake_smtp violation %s\n" % v)

    def _auth_event(self, conn, mech, user, ok, tls, reply):
        with self._lock:
            self._auth_events.append(AuthEvent(conn.id, mech, user, ok, tls, reply, time.time()))

    def _new_message(self, session, tx, data, transfer, kinds):
        with self._lock:
            n = next(self._msg_ids)
            conn = session.conn
            return ReceivedMessage(
                id=n, queue_id="FAKE%06d" % n, connection_id=conn.id,
                index_on_connection=conn.messages + 1, mail_from=tx.mail_from,
                rcpt_to=list(tx.rcpts), rcpt_rejected=list(tx.rejected), data=data,
                mail_params=dict(tx.params), rcpt_params=dict(tx.rcpt_params),
                declared_size=tx.declared_size, body=tx.body, auth_user=session.auth_user,
                auth_mechanism=session.auth_mech, tls=session.tls, tls_version=conn.tls_version,
                helo=session.helo, transfer=transfer, received_at=time.time(), violations=kinds)

    def _record_message(self, msg, conn, code, text, acknowledged):
        msg.reply_code = code
        msg.reply_text = text
        msg.acknowledged = acknowledged
        with self._lock:
            self._messages.append(msg)
            conn.messages += 1
            if acknowledged:
                conn.acknowledged += 1
            self._cond.notify_all()
        if self.verbose:
            sys.stderr.write("fake_smtp[%d] message %s from <%s> to %s: %s %s\n" % (
                conn.id, msg.queue_id, msg.mail_from, msg.rcpt_to, code, text))

    def _connection_closed(self, conn, reason):
        with self._lock:
            conn.closed_at = time.time()
            conn.close_reason = reason
            self._active -= 1
            self._sessions.pop(conn.id, None)
            self._cond.notify_all()

    # ---- records (for tests) ----------------------------------------------

    @property
    def messages(self):
        """Every message received in full, in order (see ReceivedMessage)."""
        return self._snapshot(self._messages)

    @property
    def acknowledged_messages(self):
        with self._lock:
            return [m for m in self._messages if m.acknowledged]

    @property
    def violations(self):
        return self._snapshot(self._violations)

    def violation_kinds(self):
        with self._lock:
            return [v.kind for v in self._violations]

    def assert_no_violations(self):
        vs = self.violations
        if vs:
            raise AssertionError("SMTP protocol violations:\n  " + "\n  ".join(map(str, vs)))

    @property
    def connections(self):
        return self._snapshot(self._connections)

    @property
    def connection_count(self):
        with self._lock:
            return len(self._connections)

    @property
    def active_connections(self):
        with self._lock:
            return self._active

    @property
    def max_concurrent_connections(self):
        """The most connections that were open at the same time."""
        with self._lock:
            return self._max_active

    def messages_per_connection(self):
        """{connection id: messages received in full on it}, every connection."""
        with self._lock:
            return {c.id: c.messages for c in self._connections}

    @property
    def auth_events(self):
        return self._snapshot(self._auth_events)

    def wait_messages(self, n=1, timeout=10, acknowledged=None):
        """Waits until at least `n` messages were received in full (only
        acknowledged ones if acknowledged=True); returns those messages.
        Raises TimeoutError otherwise."""
        def pick():
            return [m for m in self._messages if acknowledged is None
                    or m.acknowledged == acknowledged]
        return self._wait_count(pick, n, timeout, "messages")

    def wait_connections(self, n=1, timeout=10):
        """Waits until at least `n` connections were accepted."""
        return self.wait_for(lambda: len(self._connections) >= n, timeout,
                             "expected %d connections" % n)

    def wait_idle(self, timeout=10):
        """Waits until no connection is open."""
        return self.wait_for(lambda: self._active == 0, timeout, "connections still open")

    def clear_records(self):
        """Forgets messages, violations, closed connections and AUTH events;
        the connection high-water mark restarts from the open ones."""
        with self._lock:
            self._messages.clear()
            self._violations.clear()
            self._auth_events.clear()
            self._connections = [c for c in self._connections if c.open]
            self._max_active = self._active


# --------------------------------------------------------------------------


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Run the fake upstream SMTP server (smarthost).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("starttls", "implicit", "plain"), default="starttls")
    ap.add_argument("--hostname", default="smarthost.test")
    ap.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    ap.add_argument("--token", action="append", default=[], metavar="USER:TOKEN",
                    help="an access token XOAUTH2 accepts")
    ap.add_argument("--require-auth", action="store_true")
    ap.add_argument("--auth-before-tls", action="store_true")
    ap.add_argument("--no-starttls", action="store_true", help="do not offer STARTTLS")
    ap.add_argument("--chunking", action="store_true")
    ap.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE)
    ap.add_argument("--sync-action", choices=("reject", "continue"), default="reject")
    ap.add_argument("--verbose", action="store_true", help="print the transcript")
    args = ap.parse_args(argv)
    with FakeSmtpServer(mode=args.mode, host=args.host, port=args.port,
                        hostname=args.hostname, offer_starttls=not args.no_starttls,
                        auth_before_tls=args.auth_before_tls, require_auth=args.require_auth,
                        chunking=args.chunking, max_message_size=args.max_size,
                        sync_action=args.sync_action, verbose=args.verbose) as fake:
        for spec in args.user:
            name, _, password = spec.partition(":")
            fake.add_user(name, password)
        for spec in args.token:
            user, _, token = spec.partition(":")
            fake.add_oauth_token(user, token)
        print("listening:  %s:%d (%s)" % (fake.host, fake.port, fake.mode))
        print("CA file:    %s" % fake.ca_file)
        print("users:      %s" % (", ".join(u.partition(":")[0] for u in args.user) or "none"))
        print("Ctrl-C stops it.", flush=True)
        run_until_interrupted([
            (lambda: fake.messages,
             lambda m: "message %s: <%s> -> %s, %d octets, auth %s, %s, reply %s %s" % (
                 m.queue_id, m.mail_from, ", ".join(m.rcpt_to), m.size, m.auth_user,
                 m.tls_version or "no TLS", m.reply_code, m.reply_text or "")),
            (lambda: fake.violations, lambda v: "violation: %s" % v)], interval=0.5)


if __name__ == "__main__":
    main()
