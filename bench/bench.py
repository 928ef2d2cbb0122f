#!/usr/bin/env python3
"""Mailbridge benchmarks (Python 3, standard library only). Run through
`bench/run` (or `make bench`), which builds the release binary first unless
MB_BIN names one.

Scenario "ingest" — durable ingest: how fast a relay takes mail from many
LAN clients and stores it safely, delivery left aside.

  Systems, each a fresh private instance on 127.0.0.1 in its own temporary
  directory for every run (see systems.py):
    - Mailbridge, tracker on (the default: `tracker.retention_days: 30`);
    - Mailbridge, tracker off (`tracker.retention_days: -1`);
    - Postfix (the Debian package, 3.7 on Debian 12) as the reference.
  Both Mailbridge and Postfix fsync what they acknowledge (Postfix's
  default is kept). Neither delivers: Mailbridge's provider is unreachable
  and its circuit opens after the first attempt, Postfix parks mail in its
  hold queue; so the work measured is receive, store durably, answer 250.

  Variants: a new connection per message, and reused connections (each of
  the clients sends its share of the messages over one connection;
  smtp-source -d).

  Per run and system:
    1. warm-up: a few hundred messages, not measured;
    2. load: Postfix's smtp-source sends --messages messages of --size bytes
       of body from --clients parallel sessions (-s); smtp-source aborts on
       any reply but the expected one, so a run that completes had every
       message answered 250. Figures: messages/s = messages / wall time of
       the smtp-source run; CPU seconds per 1,000 messages = the server's
       CPU time (user + system, from /proc/PID/stat; for Postfix summed over
       the master and all its children) over that same interval;
    3. latency probe: our own client (smtpload.py) offers half the rate just
       measured, Poisson arrivals, for --probe-seconds, and times each
       message from the final dot to the 250; p50 and p99 over those.
       (smtp-source gives no latencies, and timing inside a saturated load
       would measure queueing, not the relay: half the peak is where a
       relay should still answer quickly.)
    4. check: the number of messages in the queue (Mailbridge: <id>.mail
       files; Postfix: files in incoming/active/deferred/hold) must equal
       the messages answered 250 (warm-up + load + probe).
  Systems alternate within each run (the order rotates from run to run) so
  that drifts of the machine (page cache, thermal, a neighbour) spread over
  all of them.

  Tracker pairs: per variant, --tracker-pairs more runs of Mailbridge with
  the tracker on and off back to back (load only, the order alternating);
  the median of the pairs' on/off ratios judges the tracker's cost, as
  drifts of the machine between runs minutes apart would swamp a 5 % bar.

  Once per variant the probe also runs against smtp-sink (answers at once,
  stores nothing) at Mailbridge's probe rate: the floor that the client and
  loopback add to every latency.

Scenarios "graph", "memory", "throttled" and "cpu" (bench/scenario_*.py,
each with its own docstring): end to end through a fast fake Graph
(bench/graph_h2, HTTP/2 over TLS) at 0 and 100 ms of latency, the fake
measured alone first; the relay's memory idle (beside the floor that its
shared libraries alone cost, and an idle Postfix), with 1,000 idle
connections and relaying a 100 MB message to a fake Graph; a burst of 300 messages to
one mailbox against a fake Graph that enforces 4 concurrent requests and 30
a minute (about nine minutes); instructions per message under valgrind.
--scenarios chooses among ingest, graph, memory, throttled and cpu.

Output: a Markdown table (medians and min–max over runs, ratios Mailbridge /
Postfix and tracker on / off, the targets with met/missed) on stdout and in
docs/benchmarks.md, and JSON in bench/results/latest.json (--json PATH).

Smoke mode (--smoke): tiny counts, one run each, asserts only that every
scenario ran and produced numbers, never a speed; writes no docs (JSON only
with --json). Without Postfix it still runs the Mailbridge systems, with
the load from smtpload.py instead of smtp-source, and says why Postfix was
skipped.

Exit status: 0 done; 1 a run failed or (smoke) a figure is missing; 2 the
environment is not fit (no binary, no Postfix in full mode ...); 3 with
--strict, a target was missed.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import report
import smtpload
from systems import (CLK_TCK, MAIN_CF, MASTER_CF, POSTFIX_SBIN, BenchError, MailbridgeRelay,
                     PostfixInstance, SmtpSink, mailbridge_config, postconf_default,
                     postfix_tools, system_postfix_pid)

ROOT = Path(__file__).resolve().parent.parent
SENDER, RECIPIENT = smtpload.SENDER, smtpload.RECIPIENT

VARIANTS = {
    "new-connection": {"title": "A new connection per message", "reuse": False},
    "reused": {"title": "Reused connections (many messages per connection)", "reuse": True},
}
SYSTEMS = {
    "mailbridge-tracker-on": "Mailbridge, tracker on (default)",
    "mailbridge-tracker-off": "Mailbridge, tracker off",
    "postfix": "Postfix",
}

SHORT = {"mailbridge-tracker-on": "on", "mailbridge-tracker-off": "off", "postfix": "pf"}

# Instances alive right now; stopped in main()'s finally whatever happens.
LIVE = set()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class SmtpSourceLoad:
    name = "Postfix smtp-source"

    def run(self, port, total, clients, reuse, size):
        """(accepted, seconds, error or None)."""
        cmd = [os.path.join(POSTFIX_SBIN, "smtp-source"), "-s", str(clients), "-m", str(total),
               "-l", str(size), "-f", SENDER, "-t", RECIPIENT, "-M", smtpload.HELO]
        if reuse:
            cmd.append("-d")   # don't disconnect: next message on the same connection
        cmd.append(f"127.0.0.1:{port}")
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=max(60, total / 20))
        except subprocess.TimeoutExpired:
            return 0, time.perf_counter() - t0, f"smtp-source did not finish {total} messages in time"
        seconds = time.perf_counter() - t0
        if res.returncode != 0:
            # smtp-source stops at the first unexpected reply: how many got
            # 250 before is not known, so the run counts for nothing.
            return 0, seconds, (f"smtp-source exited with {res.returncode}: "
                                f"{(res.stderr or res.stdout).strip()[-500:]}")
        return total, seconds, None


class PythonLoad:
    name = "bench/smtpload.py (closed loop; smtp-source not installed)"

    def run(self, port, total, clients, reuse, size):
        tally, seconds = smtpload.blast("127.0.0.1", port, total, clients, reuse, size)
        err = None
        if tally.failures:
            err = f"{sum(tally.failures.values())} message(s) failed: {tally.first_failure}"
        return tally.accepted, seconds, err


def wait_count(inst, expected, timeout):
    deadline = time.monotonic() + timeout
    n = inst.accepted_count()
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        n = inst.accepted_count()
    return n


REMOVE_AT_END = []  # run directories that main() deletes when everything ran


def remove_run_directories():
    while REMOVE_AT_END:
        shutil.rmtree(REMOVE_AT_END.pop(), ignore_errors=True)


def run_one(args, key, variant, run_no, load, tmpbase, probe=True):
    """One system, one variant, one run: a dict of figures, with "error"
    set when something failed (the instance's log excerpt included).
    Without probe, only the load is measured (the tracker pairs)."""
    reuse = VARIANTS[variant]["reuse"]
    rec = {"run": run_no + 1, "messages": args.messages, "clients": args.clients, "error": None}
    # Short names: the control socket's path must stay under 108 bytes.
    workdir = tempfile.mkdtemp(prefix=f"mbb-{SHORT[key]}-", dir=tmpbase)
    if key == "postfix":
        inst = PostfixInstance(workdir)
    else:
        inst = MailbridgeRelay(args.binary, workdir, tracker=(key == "mailbridge-tracker-on"),
                               clients_max=args.clients)
    LIVE.add(inst)
    try:
        inst.start()
        accepted_total = 0
        if args.warmup:
            n, _, err = load.run(inst.port, args.warmup, args.clients, reuse, args.size)
            if err:
                raise BenchError(f"warm-up: {err}")
            accepted_total += n
        os.sync()   # the warm-up's writes are not charged to the measured load

        c0 = inst.cpu_ticks()
        n, seconds, err = load.run(inst.port, args.messages, args.clients, reuse, args.size)
        c1 = inst.cpu_ticks()
        if err:
            raise BenchError(f"load: {err}")
        accepted_total += n
        cpu = (c1 - c0) / CLK_TCK
        rec.update(seconds=seconds, accepted=n, rate=n / seconds, cpu_seconds=cpu,
                   cpu_per_1000=cpu * 1000 / n if n else None)

        if not probe:
            count = wait_count(inst, accepted_total, 10)
            if count != accepted_total:
                raise BenchError(f"{accepted_total} messages were answered 250 but {count} are in the queue")
            return rec
        target = rec["rate"] / 2
        tally, info = smtpload.probe("127.0.0.1", inst.port, target, args.probe_seconds,
                                     args.probe_max, reuse, args.clients, args.size,
                                     seed=run_no * 7 + (3 if reuse else 0))
        accepted_total += tally.accepted
        lat = [x * 1000 for x in tally.latencies]
        rec["probe"] = {"target_rate": target, **info, **tally.as_dict()}
        rec["probe_rate"] = tally.accepted / info["offered_seconds"] if info["offered_seconds"] else None
        if lat:
            rec.update(p50_ms=smtpload.percentile(lat, 50), p99_ms=smtpload.percentile(lat, 99))
            rec["probe"]["max_ms"] = max(lat)
        if rec["probe_rate"] is not None and rec["probe_rate"] < 0.8 * target:
            rec["warning"] = (f"the latency probe reached {rec['probe_rate']:.0f} of the "
                              f"{target:.0f} msg/s asked: the client, not the server, may set "
                              f"the pace, and its delays are in the latencies")
        if tally.failures:
            raise BenchError(f"latency probe: {sum(tally.failures.values())} message(s) not "
                             f"accepted, first: {tally.first_failure}")

        count = wait_count(inst, accepted_total, 10)
        rec.update(expected_in_queue=accepted_total, in_queue=count)
        if count != accepted_total:
            raise BenchError(f"{accepted_total} messages were answered 250 but "
                             f"{count} are in the queue")
    except BenchError as e:
        rec["error"] = f"{e}\n--- last lines of the {key} log ---\n{inst.log_tail()}"
    except Exception:   # a bug or an OS error: report it as this run's failure
        rec["error"] = (f"unexpected error:\n{traceback.format_exc()}"
                        f"--- last lines of the {key} log ---\n{inst.log_tail()}")
    finally:
        # Interrupted here, the instance stays in LIVE and main() stops it.
        warning = inst.stop()
        LIVE.discard(inst)
        if warning:
            rec["warning"] = "; ".join(filter(None, [rec.get("warning"), warning]))
        if args.keep or (rec["error"] and args.keep_failed):
            rec["workdir"] = workdir
        else:
            # Removed when the whole benchmark ends, not now: on ext4 without
            # a journal (as on the machine of docs/benchmarks.md), creating a
            # file skips every inode freed in the last one to five minutes,
            # so after a run's 20,000 files were deleted the next runs, and
            # the graph scenario after them, created files several times
            # slower and order decided the ratios.
            REMOVE_AT_END.append(workdir)
    return rec


def probe_floor(args, variant, rate):
    sink = SmtpSink()
    LIVE.add(sink)
    try:
        sink.start()
        tally, info = smtpload.probe("127.0.0.1", sink.port, rate, args.probe_seconds,
                                     args.probe_max, VARIANTS[variant]["reuse"], args.clients,
                                     args.size)
        lat = [x * 1000 for x in tally.latencies]
        if not lat:
            return {"error": f"no message accepted ({tally.first_failure})"}
        return {"target_rate": rate, "probe_rate": tally.accepted / info["offered_seconds"],
                "p50_ms": smtpload.percentile(lat, 50), "p99_ms": smtpload.percentile(lat, 99),
                **tally.as_dict()}
    except Exception as e:   # the floor is a side figure: never fail the benchmark on it
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        sink.stop()
        LIVE.discard(sink)   # not reached when stop() is interrupted: main() stops it


def _median_of(sysres, key):
    s = (sysres or {}).get("summary", {}).get(key)
    return s["median"] if s else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def judge(args, var):
    on = var["systems"].get("mailbridge-tracker-on")
    off = var["systems"].get("mailbridge-tracker-off")
    pf = var["systems"].get("postfix")
    r = {
        "mailbridge_vs_postfix_rate": _ratio(_median_of(on, "rate"), _median_of(pf, "rate")),
        "mailbridge_vs_postfix_cpu": _ratio(_median_of(on, "cpu_per_1000"), _median_of(pf, "cpu_per_1000")),
        "tracker_on_vs_off_rate": _ratio(_median_of(on, "rate"), _median_of(off, "rate")),
        "tracker_on_vs_off_cpu": _ratio(_median_of(on, "cpu_per_1000"), _median_of(off, "cpu_per_1000")),
    }
    var["ratios"] = r
    p99 = _median_of(on, "p99_ms")
    targets = [
        ("Mailbridge messages/s ≥ 2× Postfix's (same run)", r["mailbridge_vs_postfix_rate"],
         lambda x: x >= 2.0, report.ratio_text),
        ("p99 final dot → 250 < 20 ms at half of Mailbridge's peak rate (median of runs)", p99,
         lambda x: x < 20.0, lambda x: f"{x:.2f} ms"),
        ("tracker on within 5 % of tracker off (messages/s, median of the back-to-back pairs' on / off ≥ 0.95)",
         (var.get("tracker_pairs") or {}).get("median_ratio"), lambda x: x >= 0.95, report.ratio_text),
    ]
    var["targets"] = []
    for name, value, ok, fmt in targets:
        if value is None:
            result = "not measured"
        elif args.smoke:
            result = "not judged (smoke)"
        else:
            result = "met" if ok(value) else "missed"
        var["targets"].append({"target": name, "value": value, "result": result,
                               "value_text": "–" if value is None else fmt(value)})


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The module docstring of bench/bench.py explains what is measured.")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny counts, one run each: check that everything runs, judge no speed")
    ap.add_argument("--runs", type=int, help="runs per system and variant (default 3; smoke 1)")
    ap.add_argument("--messages", type=int, help="messages per measured load (default 10000; smoke 200)")
    ap.add_argument("--clients", type=int, help="concurrent clients (default 50; smoke 10)")
    ap.add_argument("--size", type=int, default=4096, help="body bytes per message (default 4096)")
    ap.add_argument("--warmup", type=int, help="warm-up messages per run (default 500; smoke 20)")
    ap.add_argument("--probe-seconds", type=float, help="latency probe duration (default 10; smoke 2)")
    ap.add_argument("--probe-max", type=int, help="latency probe message cap (default 20000; smoke 100)")
    ap.add_argument("--tracker-pairs", type=int,
                    help="extra back-to-back runs of Mailbridge with tracker on and off, per variant, "
                         "that judge the tracker's cost (default 5; smoke 1)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--scenarios", default="ingest,graph,memory,throttled,cpu",
                    help="comma-separated subset of ingest, graph, memory, throttled, cpu")
    ap.add_argument("--json", help="write the JSON here (default bench/results/latest.json; "
                                   "smoke: only when given)")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    ap.add_argument("--keep", action="store_true", help="keep every run's temporary directory")
    ap.add_argument("--keep-failed", action="store_true", help="keep the directories of failed runs")
    ap.add_argument("--allow-debug-binary", action="store_true",
                    help="full mode with a sanitizer (dev) build: numbers then mean nothing")
    a = ap.parse_args(argv)
    d = ({"runs": 1, "messages": 200, "clients": 10, "warmup": 20, "probe_seconds": 2, "probe_max": 100,
          "tracker_pairs": 1}
         if a.smoke else
         {"runs": 3, "messages": 10000, "clients": 50, "warmup": 500, "probe_seconds": 10, "probe_max": 20000,
          "tracker_pairs": 5})
    for k, v in d.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.scenarios = [v.strip() for v in a.scenarios.split(",") if v.strip()]
    unknown = [v for v in a.scenarios if v not in ("ingest", "graph", "memory", "throttled", "cpu")]
    if unknown or not a.scenarios:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from ingest, graph, memory, throttled, cpu")
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in a.variants if v not in VARIANTS]
    if bad or not a.variants:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    if min(a.runs, a.messages, a.clients, a.size) < 1 or a.warmup < 0 or a.probe_seconds <= 0:
        ap.error("counts must be positive")
    return a


def environment(args):
    """Checks what the run needs; returns (load generator, postfix skip
    reason or None, versions, machine). Exits 2 when unfit."""
    def unfit(msg):
        log(f"bench: {msg}")
        sys.exit(2)

    binary = os.environ.get("MB_BIN") or str(ROOT / "build" / "release" / "src" / "cli" / "mailbridge")
    if not os.access(binary, os.X_OK):
        unfit(f"no mailbridge binary at {binary} (bench/run builds it; or set MB_BIN)")
    args.binary = binary
    ver = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60)
    sanitized = report.sanitized_binary(binary)
    if sanitized and not args.smoke and not args.allow_debug_binary:
        unfit(f"{binary} is a sanitizer (debug) build; its speed means nothing. Unset MB_BIN "
              "to build and use build/release, or pass --allow-debug-binary")

    ok, why = postfix_tools()
    skip = None
    if not ok:
        if not args.smoke:
            unfit(f"full mode compares with Postfix: {why}")
        skip = why
    load = SmtpSourceLoad() if os.access(os.path.join(POSTFIX_SBIN, "smtp-source"), os.X_OK) else PythonLoad()

    tmpbase = os.environ.get("MB_BENCH_TMPDIR") or tempfile.gettempdir()
    machine = report.machine_info(tmpbase)
    if machine["tmpdir_filesystem"].split()[0] in ("tmpfs", "ramfs") and not args.smoke:
        unfit(f"{tmpbase} is on {machine['tmpdir_filesystem']}: fsync costs nothing there. "
              "Set MB_BENCH_TMPDIR to a directory on a disk")
    versions = {
        "mailbridge": (ver.stdout.strip() or ver.stderr.strip() or "?"),
        "mailbridge_binary": binary,
        "mailbridge_sanitized": sanitized,
        "postfix": None if skip else postconf_default("mail_version"),
    }
    return load, skip, versions, machine, tmpbase


def run_ingest(args, load, postfix_skip, versions):
    sc = {
        "title": "durable ingest",
        "description": (
            "How fast each system takes mail over SMTP and stores it durably (acknowledged = "
            "fsynced), with delivery held back so that only ingest is measured: Mailbridge's "
            "provider is an SMTP server on a closed loopback port, so its first attempt fails, "
            "the circuit breaker opens for an hour (breaker_failures: 1) and the rest stays "
            "queued unattempted; Postfix accepts into its hold queue (smtpd_data_restrictions = "
            "check_client_access static:HOLD), so no qmgr scheduling or delivery takes place. "
            "Mailbridge runs with `smtp: {wait_for_delivery: 0s}`; tracker on is the default "
            "configuration (retention_days 30), tracker off is retention_days -1."),
        "variants": {},
        "notes": [],
        # What each instance ran with ({...} are filled in per run).
        "configs": {
            "mailbridge_tracker_on": mailbridge_config("{workdir}/state", "{closed port}", True, args.clients),
            "mailbridge_tracker_off": mailbridge_config("{workdir}/state", "{closed port}", False, args.clients),
            "postfix_main_cf": MAIN_CF,
            "postfix_master_cf": MASTER_CF,
        },
    }
    if postfix_skip:
        sc["notes"].append(f"Postfix skipped: {postfix_skip}.")
    other = system_postfix_pid()
    if other:
        sc["notes"].append(f"The system's own Postfix was running (master pid {other}): it took "
                           "no part, but shared the machine.")
    if versions.get("mailbridge_sanitized"):
        sc["notes"].append("The Mailbridge binary is a sanitizer (debug) build: its figures only "
                           "show that the scenario runs.")
    sc["notes"].append(
        "Latency is timed by bench/smtpload.py (Python asyncio) on the same machine as the server"
        + ("." if postfix_skip else "; the 'probe floor' row is the same client against "
           "smtp-sink, which answers at once and stores nothing."))
    sc["notes"].append(
        "Each run's directory (its queue) is deleted only when the whole benchmark has run: on ext4 "
        "without a journal, creating a file skips the inodes freed in the last one to five minutes, "
        "so deleting a run's 20,000 files slowed the runs after it, whichever system they measured.")
    systems = [k for k in SYSTEMS if not (k == "postfix" and postfix_skip)]
    for variant in args.variants:
        var = {"title": VARIANTS[variant]["title"], "systems": {}}
        runs = {k: [] for k in systems}
        for run_no in range(args.runs):
            order = systems[run_no % len(systems):] + systems[:run_no % len(systems)]
            for pos, key in enumerate(order):
                log(f"[ingest {variant} run {run_no + 1}/{args.runs}] {SYSTEMS[key]} ...")
                rec = run_one(args, key, variant, run_no, load, args.tmpbase)
                rec["position"] = pos + 1
                runs[key].append(rec)
                if rec["error"]:
                    log(f"  FAILED: {rec['error']}")
                else:
                    log(f"  {rec['rate']:.0f} msg/s, CPU {rec['cpu_per_1000']:.3f} s/1000 msg, "
                        f"probe {rec['probe_rate']:.0f} msg/s: p50 {rec.get('p50_ms', 0):.2f} ms, "
                        f"p99 {rec.get('p99_ms', 0):.2f} ms")
                if rec.get("warning"):
                    log(f"  warning: {rec['warning']}")
        for key in SYSTEMS:
            if key not in systems:
                var["systems"][key] = {"label": SYSTEMS[key], "skipped": postfix_skip}
                continue
            label = SYSTEMS[key]
            if key == "postfix":
                label = f"Postfix {versions['postfix']}"
            good = [r for r in runs[key] if not r["error"]]
            var["systems"][key] = {"label": label, "runs": runs[key],
                                   "summary": report.summarize(good)}
            for r in runs[key]:
                if r.get("warning"):
                    sc["notes"].append(f"{label}, {variant}, run {r['run']}: {r['warning']}.")
        on_rate = _median_of(var["systems"]["mailbridge-tracker-on"], "rate")
        if on_rate and not postfix_skip:
            log(f"[ingest {variant}] probe floor against smtp-sink ...")
            fl = var["probe_floor"] = probe_floor(args, variant, on_rate / 2)
            log(f"  failed: {fl['error']}" if fl.get("error") else
                f"  probe {fl['probe_rate']:.0f} msg/s: p50 {fl['p50_ms']:.2f} ms, "
                f"p99 {fl['p99_ms']:.2f} ms")
        var["tracker_pairs"] = tracker_pairs(args, variant, load)
        judge(args, var)
        sc["variants"][variant] = var
    return sc


def tracker_pairs(args, variant, load):
    """The tracker's cost on acceptance, judged on pairs: Mailbridge with the
    tracker on and off run back to back (the order alternating), the load
    only, and each pair gives one ratio. Drifts of the machine, which move
    rates by tens of per cent between runs minutes apart, hit both halves
    of a pair alike; the median of the pairs' ratios is the figure."""
    pairs = []
    for i in range(args.tracker_pairs):
        order = ["mailbridge-tracker-on", "mailbridge-tracker-off"]
        if i % 2:
            order.reverse()
        recs = {}
        for key in order:
            log(f"[ingest {variant} tracker pair {i + 1}/{args.tracker_pairs}] {SYSTEMS[key]} ...")
            recs[key] = run_one(args, key, variant, 100 + i, load, args.tmpbase, probe=False)
            if recs[key]["error"]:
                log(f"  FAILED: {recs[key]['error']}")
            else:
                log(f"  {recs[key]['rate']:.0f} msg/s")
        on, off = recs["mailbridge-tracker-on"], recs["mailbridge-tracker-off"]
        pair = {"pair": i + 1, "on_rate": on.get("rate"), "off_rate": off.get("rate"),
                "error": on["error"] or off["error"]}
        if not pair["error"]:
            pair["ratio"] = on["rate"] / off["rate"]
        pairs.append(pair)
    ratios = sorted(p["ratio"] for p in pairs if "ratio" in p)
    median = None
    if ratios:
        mid = len(ratios) // 2
        median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return {"pairs": pairs, "median_ratio": median, "min_ratio": ratios[0] if ratios else None,
            "max_ratio": ratios[-1] if ratios else None}


MB = 1024 * 1024

# name -> (module, title, [(figure key, title, format)], targets(figures) -> [(target, value text, met)])
EXTRAS = {
    "graph": ("scenario_graph", "end to end through Graph",
              [("fake_alone_requests_per_second", "the fake alone (h2load): sendMail requests/s", "{:,.0f}"),
               ("fake_alone_cpu_per_1000", "the fake alone: its CPU s / 1000 requests", "{:.3f}"),
               ("runs", "runs per latency (medians below)", "{:.0f}"),
               ("messages_0ms", "messages per run, 0 ms", "{:.0f}"),
               ("messages_per_second_0ms", "messages/s, first connect to last 202, 0 ms", "{:,.0f}"),
               ("accept_rate_0ms", "SMTP acceptance messages/s, 0 ms", "{:,.0f}"),
               ("p50_ms_0ms", "delivery latency p50 (ms, final dot to 202), 0 ms", "{:.1f}"),
               ("p99_ms_0ms", "delivery latency p99 (ms), 0 ms", "{:.1f}"),
               ("cpu_per_1000_0ms", "relay CPU s / 1000 messages, 0 ms", "{:.3f}"),
               ("graph_connections_0ms", "Graph connections opened (all runs), 0 ms", "{:.0f}"),
               ("resent_at_once_0ms", "requests resent at once after a broken connection, 0 ms", "{:.0f}"),
               ("deferred_attempts_0ms", "attempts deferred to the queue's retry, 0 ms", "{:.0f}"),
               ("messages_100ms", "messages per run, 100 ms", "{:.0f}"),
               ("messages_per_second_100ms", "messages/s, first connect to last 202, 100 ms", "{:,.0f}"),
               ("accept_rate_100ms", "SMTP acceptance messages/s, 100 ms", "{:,.0f}"),
               ("p50_ms_100ms", "delivery latency p50 (ms), 100 ms", "{:.1f}"),
               ("p99_ms_100ms", "delivery latency p99 (ms), 100 ms", "{:.1f}"),
               ("cpu_per_1000_100ms", "relay CPU s / 1000 messages, 100 ms", "{:.3f}"),
               ("resent_at_once_100ms", "requests resent at once after a broken connection, 100 ms", "{:.0f}"),
               ("deferred_attempts_100ms", "attempts deferred to the queue's retry, 100 ms", "{:.0f}")],
              lambda f: [(">= 2,000 messages/s at 0 ms", f"{f['messages_per_second_0ms']:,.0f}",
                          f["messages_per_second_0ms"] >= 2000),
                         (">= 500 messages/s at 100 ms", f"{f['messages_per_second_100ms']:,.0f}",
                          f["messages_per_second_100ms"] >= 500),
                         ("<= 0.4 CPU-s per 1,000 messages (0 ms)", f"{f['cpu_per_1000_0ms']:.3f}",
                          f["cpu_per_1000_0ms"] <= 0.4),
                         ("the fake alone is faster than the target (>= 2× 2,000/s)",
                          f"{f['fake_alone_requests_per_second']:,.0f}/s",
                          f["fake_alone_requests_per_second"] >= 4000)]),
    "memory": ("scenario_memory", "memory",
               [("idle_rss_mb", "idle RSS (MB)", "{:.1f}"),
                ("idle_anon_mb", "of which anonymous (MB)", "{:.1f}"),
                ("idle_pss_mb", "idle proportional share, Pss (MB)", "{:.1f}"),
                ("library_floor_mb", "library floor: RSS of a program that only waits, same libraries (MB)",
                 "{:.1f}"),
                ("idle_above_floor_mb", "idle RSS above the library floor (MB)", "{:.1f}"),
                ("postfix_idle_rss_mb", "Postfix idle, RSS summed over its processes (MB)", "{:.1f}"),
                ("postfix_idle_pss_mb", "Postfix idle, Pss summed over its processes (MB)", "{:.1f}"),
                ("postfix_idle_processes", "Postfix idle processes", "{:.0f}"),
                ("connections", "idle connections opened", "{:.0f}"),
                ("connections_extra_mb", "RSS added by those connections (MB)", "{:.1f}"),
                ("message_mb", "message relayed (MB of attachment)", "{:.0f}"),
                ("large_seconds", "seconds from first byte to Graph's last answer", "{:.1f}"),
                ("large_rss_before_mb", "RSS before (MB)", "{:.1f}"),
                ("large_peak_mb", "peak RSS while relaying it (MB)", "{:.1f}"),
                ("large_growth_mb", "peak growth (MB)", "{:.1f}")],
               lambda f: [("idle RSS <= 10 MB", f"{f['idle_rss_mb']:.1f} MB", f["idle_rss_mb"] <= 10),
                          ("<= 30 MB more for 1,000 connections", f"{f['connections_extra_mb']:.1f} MB",
                           f["connections_extra_mb"] <= 30 if f["connections"] >= 1000 else None),
                          ("peak <= 40 MB for a 100 MB message", f"{f['large_peak_mb']:.1f} MB",
                           f["large_peak_mb"] <= 40 if f["message_mb"] >= 100 else None)]),
    "throttled": ("scenario_throttled", "throttled regime",
                  [("messages", "messages in the burst", "{:.0f}"),
                   ("per_minute", "the fake's limit per minute", "{:.0f}"),
                   ("accept_seconds", "seconds to accept the burst", "{:.1f}"),
                   ("drain_seconds", "seconds to drain it", "{:.1f}"),
                   ("minimum_seconds", "theoretical minimum (s)", "{:.1f}"),
                   ("share_of_allowed_rate", "share of the allowed rate", "{:.1%}"),
                   ("graph_requests", "sendMail requests", "{:.0f}"),
                   ("throttled_429", "answered 429", "{:.0f}"),
                   ("throttled_share", "share answered 429", "{:.2%}")],
                  lambda f: [("drain at >= 95 % of the allowed rate",
                              "-" if f["share_of_allowed_rate"] is None else f"{f['share_of_allowed_rate']:.1%}",
                              None if f["share_of_allowed_rate"] is None else f["share_of_allowed_rate"] >= 0.95),
                             ("<= 1 % of requests answered 429", f"{f['throttled_share']:.2%}",
                              f["throttled_share"] <= 0.01)]),
    "cpu": ("scenario_cpu", "instructions per message",
            [("messages", "messages (4 KB, outbox provider)", "{:.0f}"),
             ("instructions_per_message", "instructions per message", "{:,.0f}"),
             ("instructions_per_message_tracker_off", "the same with the mail log off", "{:,.0f}"),
             ("tracker_on_vs_off_instructions", "tracker on / off", "{:.3f}×"),
             ("baseline_instructions", "start and stop without mail (instructions)", "{:,.0f}")],
            lambda f: []),
}


def run_extra(args, name):
    import importlib
    module_name, title, shown, targets = EXTRAS[name]
    module = importlib.import_module(module_name)
    entry = {"title": title, "description": module.__doc__.strip().split("\n\n")[1].replace("\n", " "),
             "figures_shown": shown, "figures": {}, "targets": [], "error": None}
    if name == "cpu" and report.sanitized_binary(args.binary):
        # valgrind cannot run a binary built with AddressSanitizer.
        entry["skipped"] = "a sanitizer build cannot run under valgrind; use the release build"
        log(f"bench: scenario {name} skipped: {entry['skipped']}")
        return entry
    # Let the writes of the scenario before settle, so that this one's
    # fsyncs do not pay for them.
    os.sync()
    time.sleep(3)
    log(f"bench: scenario {name} ...")
    started = time.monotonic()
    try:
        entry["figures"] = run_scenario_process(module, args)
        if not args.smoke:
            for target, value_text, met in targets(entry["figures"]):
                entry["targets"].append({"target": target, "value_text": value_text,
                                         "result": "n/a" if met is None else ("met" if met else "missed")})
    except Exception as e:  # a scenario's failure is reported, the others still run
        entry["error"] = f"{type(e).__name__}: {e}"
        log(f"bench: scenario {name} failed: {entry['error']}")
    log(f"bench: scenario {name} took {time.monotonic() - started:.0f} s")
    return entry


def run_scenario_process(module, args):
    """Runs a scenario module in a Python process of its own (its __main__
    prints the figures as JSON) and returns the figures. Its own process, so
    that nothing an earlier scenario left in this one (threads, open files)
    can touch its load generator."""
    cmd = [sys.executable, module.__file__] + (["--smoke"] if args.smoke else [])
    env = dict(os.environ, MB_BIN=str(args.binary))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = res.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("{")), None)
    if res.returncode != 0 or start is None:
        raise RuntimeError(f"{Path(module.__file__).name} exited with {res.returncode}:\n"
                           f"{res.stderr[-20000:]}")
    return json.loads("\n".join(lines[start:]))


def smoke_problems(result):
    """What a smoke run must show: every system that was not skipped ran,
    and has each figure."""
    out = []
    for sname, sc in result["scenarios"].items():
        for vkey, var in sc["variants"].items():
            tp = var.get("tracker_pairs")
            if tp is not None and tp.get("median_ratio") is None:
                out.append(f"{sname}/{vkey}: no tracker pair gave a ratio")
            for skey, s in var["systems"].items():
                if s.get("skipped"):
                    continue
                for r in s["runs"]:
                    if r["error"]:
                        out.append(f"{sname}/{vkey}/{skey} run {r['run']}: {r['error']}")
                for key, title, _ in report.FIGURES:
                    if key not in s["summary"]:
                        out.append(f"{sname}/{vkey}/{skey}: no figure '{title}'")
    for name, ex in (result.get("extras") or {}).items():
        if ex.get("skipped"):
            continue
        if ex["error"]:
            out.append(f"{name}: {ex['error']}")
            continue
        for key, title, _ in ex["figures_shown"]:
            if key not in ex["figures"]:
                out.append(f"{name}: no figure '{title}'")
    return out


def main(argv):
    args = parse_args(argv)
    load, postfix_skip, versions, machine, args.tmpbase = environment(args)
    if postfix_skip:
        log(f"bench: Postfix skipped: {postfix_skip}")
    log(f"bench: {'smoke' if args.smoke else 'full'} mode, binary {args.binary} ({versions['mailbridge']}), "
        f"Postfix {versions['postfix'] or '-'}, load from {load.name}")
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "machine": machine,
        "versions": versions,
        "parameters": {"runs": args.runs, "messages": args.messages, "clients": args.clients,
                       "size": args.size, "warmup": args.warmup, "probe_seconds": args.probe_seconds,
                       "probe_max": args.probe_max, "variants": args.variants,
                       "load_generator": load.name},
        "scenarios": {},
    }
    if "ingest" in args.scenarios:
        result["scenarios"]["ingest"] = run_ingest(args, load, postfix_skip, versions)
    result["extras"] = {name: run_extra(args, name) for name in ("graph", "memory", "throttled", "cpu")
                        if name in args.scenarios}
    remove_run_directories()

    failed = [f"{s}/{v}/{k} run {r['run']}"
              for s, sc in result["scenarios"].items() for v, var in sc["variants"].items()
              for k, sy in var["systems"].items() for r in sy.get("runs", []) if r["error"]]
    problems = smoke_problems(result) if args.smoke else (
        [f"{x} failed" for x in failed] +
        [f"{n}: {ex['error']}" for n, ex in result["extras"].items() if ex["error"]])
    result["problems"] = problems

    md = report.render_markdown(result)
    print(md)
    json_path = args.json or (None if args.smoke else str(ROOT / "bench" / "results" / "latest.json"))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        log(f"bench: JSON written to {json_path}")
    if not args.smoke and not args.no_docs:
        docs = ROOT / "docs" / "benchmarks.md"
        if problems:
            log(f"bench: {docs} left as it was, since some runs failed")
        else:
            docs.write_text(report.render_markdown(result, for_docs=True) + "\n")
            log(f"bench: {docs} written")

    if problems:
        log("bench: FAILED:\n  " + "\n  ".join(p.splitlines()[0] for p in problems))
        return 1
    if args.smoke:
        log("bench: smoke OK: every scenario ran and produced numbers (speed not judged)")
    missed = [t for sc in result["scenarios"].values() for var in sc["variants"].values()
              for t in var["targets"] if t["result"] == "missed"]
    missed += [t for ex in result["extras"].values() for t in ex["targets"] if t["result"] == "missed"]
    if missed and args.strict:
        log(f"bench: {len(missed)} target(s) missed")
        return 3
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    # Also when started from a shell that ignores SIGINT (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    code = 130
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        log("bench: interrupted")
    finally:
        # Whatever happened, no server started here outlives the harness.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for inst in list(LIVE):
            try:
                inst.stop()
            except Exception as e:   # keep stopping the others
                log(f"bench: while stopping {type(inst).__name__}: {e}")
        remove_run_directories()
    sys.exit(code)
