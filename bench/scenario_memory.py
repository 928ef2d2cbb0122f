"""Scenario "memory": how much memory the relay needs.

Three figures from /proc/<pid>/status of the relay: idle, its VmRSS a few
seconds after "ready" with no client (outbox provider); connections, its
VmRSS with N idle SMTP sessions open (each has had its greeting) minus the
idle figure; large message, the peak (VmHWM, reset through
/proc/<pid>/clear_refs after a warm-up message) while one message with an
M MB attachment is received, stored and sent to a fake Microsoft Graph (in
this process, over TLS) through a draft and an upload session. Beside the
idle VmRSS: its anonymous part (RssAnon) and its proportional share (Pss,
from smaps_rollup); the library floor, the VmRSS of a C program that only
waits, linked against the same shared libraries as the relay (sanitizer
runtimes left out), which is what loading them costs before any code of the
relay runs; and, as the peer in the same run, an idle private Postfix (the
one of the ingest scenario; its master and every child: qmgr, pickup,
postlogd) as the sum of VmRSS and of Pss over its processes. Where the
floor alone is above the idle target, no change to the relay's own code can
meet that target: the figure above the floor is what the relay adds.

Targets (the benchmarks issue): idle <= 10 MB, <= 30 MB more for 1,000
connections, peak <= 40 MB for a 100 MB message.

run(binary, smoke) returns a dict of figures; it raises RuntimeError with the
relay's log when something does not work. A figure that cannot be had here
(no C compiler for the floor, no Postfix or no root for the peer) is None.
"""

import base64
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import systems
from fake_graph import SENDER, FakeGraph, import_harness

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def _status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _pss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Pss":
                return int(value.split()[0]) * 1024
    raise RuntimeError("no Pss in /proc/%d/smaps_rollup" % pid)


SANITIZER_RUNTIMES = ("libasan", "libubsan", "libtsan", "liblsan")


def needed_libraries(binary):
    """The shared libraries the binary names (DT_NEEDED), per readelf."""
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    libs = []
    for line in out.splitlines():
        if "(NEEDED)" in line and "[" in line:
            libs.append(line[line.index("[") + 1:line.index("]")])
    return libs


def library_floor(binary):
    """VmRSS of a program that only waits, linked against the libraries
    the relay needs: their constructors run, their relocations are done,
    nothing else. None when there is no C compiler or readelf."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not shutil.which("readelf"):
        return None
    libs = [lib for lib in needed_libraries(binary) if not lib.startswith(SANITIZER_RUNTIMES)]
    work = tempfile.mkdtemp(prefix="mb-bench-floor-")
    try:
        src = os.path.join(work, "wait.c")
        exe = os.path.join(work, "wait")
        with open(src, "w") as f:
            f.write("#include <unistd.h>\nint main(void) { pause(); return 0; }\n")
        subprocess.run([cc, src, "-o", exe, "-Wl,--no-as-needed"] + ["-l:" + lib for lib in libs],
                       capture_output=True, text=True, timeout=120, check=True)
        proc = subprocess.Popen([exe])
        try:
            time.sleep(1)
            return _status(proc.pid)["VmRSS"]
        finally:
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def postfix_idle():
    """(VmRSS sum, Pss sum, process count) of an idle private Postfix, or
    None when none can run here."""
    ok, _ = systems.postfix_tools()
    if not ok:
        return None
    work = tempfile.mkdtemp(prefix="mb-bench-pf-")
    pf = systems.PostfixInstance(work)
    try:
        pf.start()
        time.sleep(3)
        pids = pf.pids()
        return (sum(_status(p)["VmRSS"] for p in pids), sum(_pss(p) for p in pids), len(pids))
    except (systems.BenchError, OSError) as e:
        # The peer is context for the relay's figures, not one of them.
        print("memory: no idle Postfix figure: %s" % e, file=sys.stderr)
        return None
    finally:
        pf.stop()
        shutil.rmtree(work, ignore_errors=True)


def _raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _read_line(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(512)
        if not chunk:
            raise RuntimeError("connection closed before the greeting")
        data += chunk
    return data


def idle_and_connections(harness, connections):
    # The children inherit the limit: the relay needs a descriptor per session.
    limit = _raise_fd_limit(connections * 2 + 256)
    if limit < connections + 64:
        raise RuntimeError("the open-file limit is %d; %d connections need more" % (limit, connections))
    relay = harness.Relay(smtp={"max_connections": connections + 100, "max_connections_per_ip": connections + 100,
                                "wait_for_delivery": "0s"},
                          logging={"level": "warn", "format": "text"}, admin={"address": "off"})
    # "ready" and the listening line are logged at info: keep them.
    relay.config["logging"]["level"] = "info"
    try:
        relay.start()
        time.sleep(2)
        status = _status(relay.proc.pid)
        idle, idle_anon, idle_pss = status["VmRSS"], status["RssAnon"], _pss(relay.proc.pid)
        socks = []
        try:
            for _ in range(connections):
                s = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
                socks.append(s)
            for s in socks:
                line = _read_line(s)
                if not line.startswith(b"220"):
                    raise RuntimeError("unexpected greeting: %r" % line)
            time.sleep(1)
            busy = _status(relay.proc.pid)["VmRSS"]
        finally:
            for s in socks:
                s.close()
        return {"idle_rss_mb": idle / MB, "idle_anon_mb": idle_anon / MB, "idle_pss_mb": idle_pss / MB,
                "connections": connections, "connections_extra_mb": (busy - idle) / MB}
    except Exception as e:
        raise RuntimeError("%s\n--- relay log:\n%s" % (e, relay.log())) from e
    finally:
        relay.stop()
        relay.cleanup()


def _multipart(sender, data):
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: Scanner <" + sender.encode() + b">\r\nTo: alice@example.com\r\nSubject: scan\r\n"
            b"Message-ID: <bench-" + os.urandom(4).hex().encode() + b"@contoso.example>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n"
            b"--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nScanned pages attached.\r\n"
            b"--=_b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n" + body + b"--=_b--\r\n")


def large_message(harness, size_mb):
    sender = SENDER
    graph = FakeGraph(roles=("Mail.Send", "Mail.ReadWrite"))
    fake, provider = graph.fake, graph.provider
    relay = None
    try:
        fake.set_max_message_size(200 * MB)
        relay = harness.Relay(providers=[provider], smtp={"max_message_size": "160MB", "wait_for_delivery": "0s"},
                              admin={"address": "off"}, logging={"level": "info", "format": "text"})
        relay.start()
        warm = _multipart(sender, os.urandom(4 * MB))
        code, text = harness.send_message(relay.port, sender, ["alice@example.com"], warm,
                                          ["SIZE=%d" % len(warm)], timeout=300)
        if code != 250:
            raise RuntimeError("warm-up message refused: %d %s" % (code, text))
        fake.wait_sent(1, timeout=120)
        relay.wait_queue_empty(timeout=60)
        pid = relay.proc.pid
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")  # VmHWM := VmRSS
        before = _status(pid)["VmRSS"]
        msg = _multipart(sender, os.urandom(size_mb * MB))
        started = time.monotonic()
        code, text = harness.send_message(relay.port, sender, ["alice@example.com"], msg,
                                          ["SIZE=%d" % len(msg)], timeout=600)
        del msg
        if code != 250:
            raise RuntimeError("the large message was refused: %d %s" % (code, text))
        fake.wait_sent(2, timeout=600)
        elapsed = time.monotonic() - started
        peak = _status(pid)["VmHWM"]
        return {"message_mb": size_mb, "large_seconds": elapsed, "large_rss_before_mb": before / MB,
                "large_peak_mb": peak / MB, "large_growth_mb": (peak - before) / MB}
    except Exception as e:
        log = relay.log() if relay else ""
        raise RuntimeError("%s\n--- relay log:\n%s" % (e, log)) from e
    finally:
        if relay:
            relay.stop()
            relay.cleanup()
        graph.close()


def run(binary, smoke=False):
    harness = import_harness(binary)
    figures = {}
    figures.update(idle_and_connections(harness, 50 if smoke else 1000))
    floor = library_floor(binary)
    figures["library_floor_mb"] = None if floor is None else floor / MB
    figures["idle_above_floor_mb"] = None if floor is None else figures["idle_rss_mb"] - floor / MB
    peer = postfix_idle()
    figures["postfix_idle_rss_mb"] = None if peer is None else peer[0] / MB
    figures["postfix_idle_pss_mb"] = None if peer is None else peer[1] / MB
    figures["postfix_idle_processes"] = None if peer is None else peer[2]
    figures.update(large_message(harness, 5 if smoke else 100))
    return figures


if __name__ == "__main__":
    import json
    binary = os.environ.get("MB_BIN") or str(ROOT / "build" / "release" / "src" / "cli" / "mailbridge")
    print(json.dumps(run(binary, smoke="--smoke" in sys.argv), indent=2))
