"""Test harness: runs the real mailbridge binary on a free port with a
temporary state directory and an outbox, and reads what it delivered.

Hermetic: every relay gets its own temporary directory and port 0; the
listening port is read from the relay's log. Nothing here talks to anything
but 127.0.0.1.
"""

import json
import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

# Tests close sockets by letting them go; the warnings would bury real output.
warnings.simplefilter("ignore", ResourceWarning)

BINARY = os.environ.get("MAILBRIDGE_BIN") or str(
    Path(__file__).resolve().parents[2] / "build" / "dev" / "src" / "cli" / "mailbridge")

LISTEN_RE = re.compile(r"listening on (\S+):(\d+) \(([^,)]+)")


def base_config(state_dir, outbox, **overrides):
    """A configuration dict; overrides are merged one level deep."""
    cfg = {
        "server": {"hostname": "relay.test", "state_dir": str(state_dir)},
        "listeners": [{"name": "test", "address": "127.0.0.1:0", "tls": "none", "auth": "none"}],
        "smtp": {"max_message_size": "10MB", "max_connections": 50},
        "access": {"allowed_networks": ["127.0.0.0/8", "::1/128"],
                   "anonymous_networks": ["127.0.0.0/8", "::1/128"]},
        "providers": [{"name": "outbox", "type": "outbox", "directory": str(outbox)}],
        "logging": {"level": "debug", "format": "text"},
        # Port 0: relays of tests running side by side never share a port.
        "admin": {"address": "127.0.0.1:0"},
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(section), dict):
            cfg[section].update(value)
        else:
            cfg[section] = value
    return cfg


def to_yaml(cfg):
    # JSON is valid YAML; it keeps the harness free of a YAML dependency.
    return json.dumps(cfg, indent=2)


class Relay:
    """One mailbridge process. Use as a context manager or call start()/stop()."""

    def __init__(self, workdir=None, env=None, **overrides):
        """`env`: extra environment variables for the process (e.g. from
        preload_env()); the rest of the environment is inherited."""
        self._own_dir = workdir is None
        self.env = dict(env or {})
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="mb-e2e-"))
        self.state_dir = self.dir / "state"
        self.outbox = self.dir / "outbox"
        self.config_path = self.dir / "mailbridge.yaml"
        self.config = base_config(self.state_dir, self.outbox, **overrides)
        self.proc = None
        self.port = None
        self.ports = {}
        self.lines = []
        self._lines_q = queue.Queue()
        self._pump_thread = None

    def write_config(self):
        self.config_path.write_text(to_yaml(self.config))

    def start(self, timeout=30):
        self.write_config()
        self.lines = []
        self._lines_q = queue.Queue()
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--config", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            env={**os.environ, **self.env} if self.env else None)
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + timeout
        self.port = None
        self.ports = {}
        while time.monotonic() < deadline:
            try:
                line = self._lines_q.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError("mailbridge exited early:\n" + self.log())
                continue
            m = LISTEN_RE.search(line)
            if m:
                self.ports[m.group(3)] = int(m.group(2))
                if self.port is None:
                    self.port = int(m.group(2))
            if line.rstrip().endswith(" ready"):
                return self
        raise RuntimeError("mailbridge did not become ready:\n" + self.log())

    def _pump(self, proc):
        for line in proc.stderr:
            self.lines.append(line)
            self._lines_q.put(line)

    def log(self):
        return "".join(self.lines)

    def wait_log(self, pattern, timeout=10):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(rx.search(l) for l in list(self.lines)):
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise RuntimeError("mailbridge did not stop on SIGTERM:\n" + self.log())
        self.proc.stderr.close()
        self.proc = None
        return rc

    def kill(self, timeout=30):
        """SIGKILL, as a crash or the OOM killer would: no handler runs and
        nothing is flushed. Reaps the process and reads its log to the end;
        returns the exit code (-9 unless it had already exited)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=timeout)
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=timeout)
        self.proc.stderr.close()
        self.proc = None
        return rc

    def restart(self, same_port=False, timeout=30):
        """Starts again on the same state directory, outbox and configuration
        after stop() or kill(). With same_port the first listener binds the port
        it had before instead of a new free one (as a service restarted by its
        supervisor would); the configuration keeps port 0 for later starts."""
        if self.proc is not None:
            raise RuntimeError("mailbridge is still running; stop() or kill() it first")
        if not same_port or self.port is None:
            return self.start(timeout)
        listeners = self.config["listeners"]
        pinned = [dict(l) for l in listeners]
        host = pinned[0]["address"].rsplit(":", 1)[0]
        pinned[0]["address"] = f"{host}:{self.port}"
        self.config["listeners"] = pinned
        try:
            return self.start(timeout)
        finally:
            self.config["listeners"] = listeners
            self.write_config()

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stderr.close()
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            rc = self.stop()
            if exc[0] is None and rc != 0:
                raise AssertionError(f"mailbridge exited with {rc}:\n" + self.log())
        finally:
            self.cleanup()

    # --- what was delivered -------------------------------------------------

    def outbox_files(self):
        if not self.outbox.is_dir():
            return []
        return sorted(self.outbox.glob("*.eml"))

    def wait_outbox(self, count, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.outbox_files()) >= count:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(
            f"expected {count} messages in the outbox, found {len(self.outbox_files())}:\n"
            + self.log())

    def delivered(self):
        """[(eml bytes, envelope dict)] in queue-id order."""
        out = []
        for eml in self.outbox_files():
            meta = json.loads(eml.with_suffix(".json").read_text())
            out.append((eml.read_bytes(), meta))
        return out

    def queued_ids(self):
        qdir = self.state_dir / "queue"
        return sorted(p.stem for p in qdir.glob("*.mail")) if qdir.is_dir() else []

    def wait_queue_empty(self, timeout=10):
        """The ids still queued after waiting up to `timeout` for none: a
        delivered or refused message leaves the queue just after its client
        is answered, not before."""
        deadline = time.monotonic() + timeout
        while self.queued_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.queued_ids()


def preload_env(library, binary=None):
    """Environment that LD_PRELOADs `library` into the relay. A binary linked
    with a sanitizer runtime (the dev build: GCC's libasan, dynamically) must
    find that runtime first in the library list or ASan refuses to start, so
    the runtime is preloaded ahead of the library. Kept: an LD_PRELOAD that
    is already set, after ours."""
    runtimes = []
    try:
        out = subprocess.run(["ldd", binary or BINARY], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        m = re.match(r"\s*(lib[at]san\.so\S*) => (\S+)", line)
        if m:
            runtimes.append(m.group(2))
    preload = runtimes + [str(library)]
    if os.environ.get("LD_PRELOAD"):
        preload.append(os.environ["LD_PRELOAD"])
    env = {"LD_PRELOAD": ":".join(preload)}
    if not runtimes and "asan" in out:
        # A runtime ldd did not name plainly: let it start behind the library.
        opts = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"
    return env


_HASHES = {}


def hash_password(password):
    """An argon2id hash made by `mailbridge hash-password` (cached: each costs
    64 MiB and a tenth of a second)."""
    if password not in _HASHES:
        out = subprocess.run([BINARY, "hash-password"], input=password + "\n",
                             capture_output=True, text=True, timeout=60, check=True)
        _HASHES[password] = out.stdout.strip()
    return _HASHES[password]


def client_tls_context(relay):
    """Trusts the relay's self-signed certificate, checks the host name."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(relay.state_dir / "tls" / "cert.pem"))
    return ctx


def send_message(port, sender, rcpts, msg, mail_options=(), timeout=60):
    """One transaction with smtplib: MAIL, each RCPT (which must be
    accepted), DATA. The (code, text) of the answer to the final dot."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        s.ehlo("scanner.test")
        s.mail(sender, list(mail_options))
        for r in rcpts:
            code, text = s.rcpt(r)
            if code != 250:
                raise AssertionError("RCPT TO:<%s> answered %d %s" % (r, code, text.decode()))
        code, text = s.data(msg)
        return code, text.decode()


def split_received(eml):
    """Splits our Received: header (with its folded lines) from the rest."""
    assert eml.startswith(b"Received: "), eml[:80]
    pos = 0
    while True:
        end = eml.index(b"\r\n", pos) + 2
        if eml[end:end + 1] in (b"\t", b" "):
            pos = end
            continue
        return eml[:end], eml[end:]


class RawClient:
    """A plain socket for exact bytes (smtplib fixes line ends and stuffs dots)."""

    def __init__(self, port, timeout=10, source=None):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.buf = b""

    def starttls(self, ctx, server_hostname="relay.test"):
        """Wraps the socket; whatever was buffered in plaintext is dropped."""
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One complete (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got " + repr(self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def code(self):
        return self.reply()[0]

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True   # closed with our unread bytes still in its buffer
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
