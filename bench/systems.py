"""The servers under test, each a private instance in its own directory on
127.0.0.1, started fresh for every run and always stopped afterwards.

- MailbridgeRelay: `mailbridge serve` on port 0 (the port is read from its
  log). Its one provider is an SMTP server on a loopback port that is bound
  but never listens, so every connection is refused at once; with
  `breaker_failures: 1` the first failed attempt opens the provider's circuit
  for an hour and everything after it stays queued without being attempted.
  Mailbridge thus does what the benchmark measures — receive, fsync, rename,
  answer 250 — and almost nothing else, as Postfix does with HOLD below. (An
  outbox provider would write every message a second time and delete it from
  the queue, work Postfix is not asked to do.)
- PostfixInstance: a second, private Postfix (its own config_directory,
  queue_directory, data_directory and maillog_file) with smtpd on a free
  loopback port and `smtpd_data_restrictions = check_client_access
  static:HOLD`, so each accepted message is written (and fsynced, Postfix's
  default) to the queue and parked in the hold queue: no qmgr scheduling, no
  delivery attempt. Needs root (`postfix -c DIR start`).

CPU time comes from /proc/PID/stat: utime + stime (all threads) + cutime +
cstime (children it has reaped). For Postfix the sum runs over the master
and every process whose parent is the master (smtpd, cleanup,
trivial-rewrite, qmgr, postlogd, anvil ...); the master's cutime/cstime holds
the time of children that exited and were reaped during the run.
"""

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(")
# Where smtp-source, smtp-sink, postfix and postconf are (Debian: /usr/sbin).
POSTFIX_SBIN = os.environ.get("MB_BENCH_POSTFIX_DIR", "/usr/sbin")


class BenchError(Exception):
    """A failure with enough context (log excerpt) to act on."""


def _stat_fields(pid):
    """Fields after the command name of /proc/PID/stat; [0] is the state
    (field 3), so field N is at index N - 3."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def cpu_ticks(pid):
    """utime + stime + cutime + cstime of one process, in clock ticks; 0 if
    it is gone."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError):
        return 0
    return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(entry)[1]) == pid:
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out


def free_port():
    """A port nobody listens on right now (tiny race until the user binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def wait_for_greeting(port, timeout):
    """True once a connection to the port gets a 220 greeting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def mailbridge_config(state_dir, provider_port, tracker, clients_max):
    """The configuration each benchmark relay runs with."""
    return {
        "server": {"hostname": "relay.bench.example", "state_dir": str(state_dir)},
        "listeners": [{"name": "bench", "address": "127.0.0.1:0",
                       "tls": "none", "auth": "none"}],
        "smtp": {"wait_for_delivery": "0s",
                 "max_connections": max(200, clients_max),
                 # The default 20 per address would refuse 50 clients that
                 # all come from 127.0.0.1.
                 "max_connections_per_ip": max(200, clients_max)},
        "access": {"allowed_networks": ["127.0.0.0/8"],
                   "anonymous_networks": ["127.0.0.0/8"]},
        # Delivery held back: see the module docstring.
        "queue": {"retry_delay": "1h", "max_retry_delay": "1h",
                  "breaker_failures": 1, "breaker_cooldown": "1h"},
        "providers": [{"name": "held", "type": "smtp", "host": "127.0.0.1",
                       "port": provider_port, "tls": "none"}],
        "tracker": {"retention_days": 30 if tracker else -1},
        "admin": {"address": "off"},
        "logging": {"level": "info", "format": "text"},
    }


class MailbridgeRelay:
    def __init__(self, binary, workdir, tracker, clients_max):
        self.binary = binary
        self.dir = Path(workdir)
        self.tracker = tracker
        self.state_dir = self.dir / "state"
        self.log_path = self.dir / "mailbridge.log"
        self.config_path = self.dir / "mailbridge.json"
        self.proc = None
        self.port = None
        self._log = None
        # Bound, never listening: connecting gets "connection refused" at
        # once, and no other program can take the port while we hold it.
        self._dead_end = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._dead_end.bind(("127.0.0.1", 0))
        self.config = mailbridge_config(self.state_dir, self._dead_end.getsockname()[1],
                                        tracker, clients_max)

    def start(self, timeout=60):
        self.dir.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML.
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if self.port is None:
                m = LISTEN_RE.search(text)
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and re.search(r" ready\s*$", text, re.M):
                return
            if self.proc.poll() is not None:
                raise BenchError(f"mailbridge exited with {self.proc.returncode} at start; "
                                 f"its log ({self.log_path}):\n{tail(self.log_path)}")
            time.sleep(0.05)
        raise BenchError(f"mailbridge did not log 'ready' within {timeout}s; "
                         f"its log:\n{tail(self.log_path)}")

    def cpu_ticks(self):
        return cpu_ticks(self.proc.pid)

    def accepted_count(self):
        """Messages in the queue: one <id>.mail per acknowledged message."""
        qdir = self.state_dir / "queue"
        return sum(1 for p in qdir.iterdir() if p.suffix == ".mail") if qdir.is_dir() else 0

    def log_tail(self):
        return tail(self.log_path)

    def stop(self):
        """SIGTERM, then SIGKILL after 30 s. Returns a warning or None."""
        warning = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    warning = "mailbridge did not stop within 30 s of SIGTERM; killed"
            if warning is None and self.proc.returncode != 0:
                warning = f"mailbridge exited with {self.proc.returncode}"
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._dead_end.close()
        return warning


MASTER_CF = """\
# Private benchmark instance: no chroot (a chroot would need copies of
# /etc files in the queue directory and changes nothing measurable).
{port_line}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# Private benchmark instance, started with `postfix -c {etc} start`.
# Everything else is Postfix's default, including fsync of queue files.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
meta_directory = {meta}
myhostname = postfix.bench.example
mydomain = bench.example
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Accept and store, then park in the hold queue: ingest only, no delivery.
smtpd_data_restrictions = check_client_access static:HOLD
maillog_file = {maillog}
maillog_file_prefixes = {workdir}
"""


def postfix_tools():
    """(ok, reason): whether a private Postfix can be run here."""
    missing = [t for t in ("postfix", "postconf", "smtp-source", "smtp-sink")
               if not os.access(os.path.join(POSTFIX_SBIN, t), os.X_OK)]
    if missing:
        return False, (f"Postfix is not installed ({', '.join(missing)} missing from "
                       f"{POSTFIX_SBIN}); `scripts/install-deps --bench` installs it")
    if os.geteuid() != 0:
        return False, "starting a Postfix instance needs root (postfix -c DIR start)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return False, "there is no 'postfix' user (is the Debian package fully installed?)"
    return True, None


def system_postfix_pid():
    """The pid of the machine's own Postfix master if it runs, else None."""
    try:
        pid = int(Path("/var/spool/postfix/pid/master.pid").read_text().split()[0])
        return pid if _stat_fields(pid)[0] != "Z" else None
    except (OSError, ValueError, IndexError):
        return None


def postconf_default(name):
    out = subprocess.run([os.path.join(POSTFIX_SBIN, "postconf"), "-dh", name],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


class PostfixInstance:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.etc = self.dir / "etc"
        self.spool = self.dir / "spool"
        self.data = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.port = None
        self.master_pid = None
        self._started = False

    def _postfix(self, *args, timeout=60):
        return subprocess.run([os.path.join(POSTFIX_SBIN, "postfix"), "-c", str(self.etc), *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, timeout=60):
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        # The daemons run as the postfix user: they must reach the directory
        # (mkdtemp makes it 0700) and own their data directory.
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        (self.etc / "master.cf").write_text(MASTER_CF.format(
            port_line=f"127.0.0.1:{self.port} inet n - n - - smtpd"))
        (self.etc / "main.cf").write_text(MAIN_CF.format(
            etc=self.etc, spool=self.spool, data=self.data, maillog=self.maillog,
            workdir=self.dir, meta=postconf_default("meta_directory") or "/etc/postfix"))
        # `start` runs `postfix check`, which creates the queue's
        # subdirectories with their owners and modes (post-install
        # create-missing).
        self._started = True
        try:
            res = self._postfix("start")
        except subprocess.TimeoutExpired:
            raise BenchError(f"postfix -c {self.etc} start did not return within 60 s; "
                             f"maillog:\n{tail(self.maillog)}") from None
        if res.returncode != 0:
            raise BenchError(
                f"postfix -c {self.etc} start failed ({res.returncode}):\n"
                f"{res.stdout}{res.stderr}\nmaillog ({self.maillog}):\n{tail(self.maillog)}")
        pidfile = self.spool / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.master_pid is None:
            self.master_pid = self._read_master_pid()
            if self.master_pid is None:
                time.sleep(0.1)
        if self.master_pid is None:
            raise BenchError(f"postfix started but wrote no {pidfile}; "
                             f"maillog:\n{tail(self.maillog)}")
        if not wait_for_greeting(self.port, max(1, deadline - time.monotonic())):
            raise BenchError(f"postfix smtpd on 127.0.0.1:{self.port} does not greet; "
                             f"maillog:\n{tail(self.maillog)}")

    def pids(self):
        return [self.master_pid] + children_of(self.master_pid)

    def cpu_ticks(self):
        return sum(cpu_ticks(p) for p in self.pids())

    def accepted_count(self):
        """Queue files: a message is in incoming/ until cleanup moves it to
        hold/ (active/deferred only if something scheduled it)."""
        n = 0
        for q in ("incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(self.spool / q):
                n += len(files)
        return n

    def log_tail(self):
        return tail(self.maillog)

    def _read_master_pid(self):
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        """postfix stop; then abort; then SIGKILL to the master and its
        children by pid. Returns a warning or None. Safe to call again."""
        if not self._started:
            return None
        warning = None
        if self.master_pid is None:
            # Start was interrupted or failed before the pid was read; a
            # master that was on its way up writes it within a moment.
            for _ in range(20):
                self.master_pid = self._read_master_pid()
                if self.master_pid is not None:
                    break
                time.sleep(0.1)
        pids = self.pids() if self.master_pid is not None else []
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            warning = "postfix stop timed out"
        if pids:
            if not _wait_gone(self.master_pid, 20):
                try:
                    self._postfix("abort", timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                if not _wait_gone(self.master_pid, 5):
                    warning = "postfix did not stop on `postfix stop` or `abort`; killed"
            # The children exit on their own once the master is gone; wait
            # for them so the next run starts on a quiet machine, and kill
            # (by pid) any that linger, the master included.
            for pid in pids:
                if not _wait_gone(pid, 10):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    warning = warning or f"postfix process {pid} did not exit; killed"
        self._started = False
        return warning


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = _stat_fields(pid)[0]
            if st == "Z":   # a zombie waiting for init: gone for our purpose
                return True
        except (OSError, ValueError):
            return True
        time.sleep(0.05)
    return False


class SmtpSink:
    """Postfix's smtp-sink on a free loopback port: answers 250 at once and
    writes nothing. Used to measure the latency probe's own floor (client +
    loopback) at the rate Mailbridge is probed at."""

    def __init__(self):
        self.port = None
        self.proc = None

    def start(self):
        self.port = free_port()
        cmd = [os.path.join(POSTFIX_SBIN, "smtp-sink")]
        if os.geteuid() == 0:
            cmd += ["-u", "postfix"]   # required when run as root
        cmd += [f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        if not wait_for_greeting(self.port, 10):
            err = b""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            self.stop()
            raise BenchError(f"smtp-sink did not start: {err.decode(errors='replace')}")

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stderr.close()
            self.proc = None
        return None
