"""Machine facts, summaries and the Markdown report of a benchmark run."""

import os
from pathlib import Path
import platform
import statistics
import subprocess

FIGURES = [
    # key, column title, format
    ("rate", "messages/s", "{:.0f}"),
    ("p50_ms", "p50 ms", None),
    ("p99_ms", "p99 ms", None),
    ("probe_rate", "probe rate msg/s", "{:.0f}"),
    ("cpu_per_1000", "CPU s / 1000 msg", "{:.3f}"),
]


def _first_line(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def filesystem_of(path):
    """(fstype, mount point) of the file system holding `path`."""
    path = os.path.realpath(path)
    best = ("?", "/")
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                    best = (parts[2], mnt)
    except OSError:
        pass
    return best


def ext4_journal(mnt):
    """' without a journal' when the ext4 file system mounted at `mnt` has
    none (its options in /proc/fs/ext4 then name no data= mode), else ''."""
    try:
        with open("/proc/mounts") as f:
            dev = next((line.split()[0] for line in f if line.split()[1:2] == [mnt]), None)
        if dev is None:
            return ""
        options = Path("/proc/fs/ext4") / os.path.basename(dev) / "options"
        return "" if "data=" in options.read_text() else " without a journal"
    except (OSError, IndexError):
        return ""


def machine_info(tmpdir):
    mem = _first_line("/proc/meminfo", "MemTotal")
    fstype, mnt = filesystem_of(tmpdir)
    if fstype == "ext4":
        fstype += ext4_journal(mnt)
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {
        "nproc": nproc,
        "cpu_model": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "?",
        "kernel": platform.release(),
        "memory": mem,
        "tmpdir": tmpdir,
        "tmpdir_filesystem": f"{fstype} on {mnt}",
        "python": platform.python_version(),
    }


def sanitized_binary(binary):
    """True when the binary links a sanitizer runtime (the dev build)."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out or "libubsan" in out or "libtsan" in out


def summarize(runs):
    """{figure: {median, min, max, n}} over the runs that have the figure."""
    out = {}
    for key, _, _ in FIGURES:
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"median": statistics.median(vals), "min": min(vals),
                        "max": max(vals), "n": len(vals)}
    return out


def _fmt(value, fmt):
    if value is None:
        return "–"
    if fmt is None:   # milliseconds: keep three significant digits or so
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return fmt.format(value)


def cell(summary, key, fmt):
    s = summary.get(key)
    if not s:
        return "–"
    text = _fmt(s["median"], fmt)
    if s["n"] > 1:
        text += f" ({_fmt(s['min'], fmt)}–{_fmt(s['max'], fmt)})"
    return text


def ratio_text(r):
    return "–" if r is None else f"{r:.2f}×"


def render_markdown(result, for_docs=False):
    p = result["parameters"]
    m = result["machine"]
    v = result["versions"]
    out = []
    if for_docs:
        out += ["# Benchmarks", "",
                "Written by `make bench` (`bench/run`, harness `bench/bench.py`). "
                "Numbers are from one machine on one day: compare systems within "
                "a run, not across machines.", ""]
    else:
        out += [f"# Benchmark results ({result['mode']} mode)", ""]
    out += [f"- Date: {result['date']}",
            f"- Machine: {m['nproc']} CPUs (nproc), {m['cpu_model']}, kernel {m['kernel']}, "
            f"memory {m['memory']}; temporary directories on {m['tmpdir_filesystem']}",
            f"- Mailbridge: {v['mailbridge']} (`{v['mailbridge_binary']}`"
            + (", **sanitizer build: not a performance figure**" if v.get("mailbridge_sanitized") else "")
            + ")",
            f"- Postfix: {v['postfix'] or 'not used'}",
            f"- Load generator: {p['load_generator']}; latency probe: bench/smtpload.py",
            "- Reproduce: `make bench` (builds the release binary, installs Postfix, "
            "runs everything on 127.0.0.1), or `bench/run --help` for the options; "
            "`bench/run --smoke` checks that every scenario runs, without judging speed.",
            ""]
    for name, sc in result["scenarios"].items():
        out += [f"## Scenario `{name}`: {sc['title']}", ""]
        out += [sc["description"], ""]
        out += [f"Per run: {p['warmup']} messages of warm-up, then {p['messages']} messages "
                f"of {p['size']} bytes of body from {p['clients']} concurrent clients "
                f"(messages/s = messages / wall time of that load), then the latency probe "
                f"for up to {p['probe_seconds']} s at half of the rate just measured. "
                f"{p['runs']} run(s) per system and variant, systems alternating; cells "
                f"show the median and, with several runs, (min–max).", ""]
        for vkey, var in sc["variants"].items():
            out += [f"### {var['title']}", ""]
            out += ["| system | " + " | ".join(t for _, t, _ in FIGURES) + " |",
                    "|---|" + "---:|" * len(FIGURES)]
            for skey, sysres in var["systems"].items():
                if sysres.get("skipped"):
                    out.append(f"| {sysres['label']} | skipped (see the notes) |"
                               + " |" * (len(FIGURES) - 1))
                    continue
                row = [cell(sysres["summary"], k, f) for k, _, f in FIGURES]
                errs = sum(1 for r in sysres["runs"] if r.get("error"))
                label = sysres["label"] + (f" ({errs} run(s) failed)" if errs else "")
                out.append(f"| {label} | " + " | ".join(row) + " |")
            fl = var.get("probe_floor")
            if fl:
                if fl.get("error"):
                    out.append(f"| probe floor (smtp-sink) | failed: {fl['error']} |"
                               + " |" * (len(FIGURES) - 1))
                else:
                    out.append(f"| probe floor: smtp-sink, no disk | – | {_fmt(fl['p50_ms'], None)} | "
                               f"{_fmt(fl['p99_ms'], None)} | {fl['probe_rate']:.0f} | – |")
            out.append("")
            r = var["ratios"]
            out += [f"Ratios (medians): Mailbridge / Postfix messages/s "
                    f"{ratio_text(r.get('mailbridge_vs_postfix_rate'))}, CPU per message "
                    f"{ratio_text(r.get('mailbridge_vs_postfix_cpu'))}; tracker on / off "
                    f"messages/s {ratio_text(r.get('tracker_on_vs_off_rate'))}, CPU per message "
                    f"{ratio_text(r.get('tracker_on_vs_off_cpu'))}.", ""]
            tp = var.get("tracker_pairs")
            if tp and tp.get("pairs"):
                cells = ", ".join(
                    f"{p['on_rate']:.0f}/{p['off_rate']:.0f} = {p['ratio']:.2f}" if "ratio" in p else "failed"
                    for p in tp["pairs"])
                out += [f"Tracker pairs (tracker on and off back to back, load only, order alternating; "
                        f"messages/s on/off = ratio): {cells}. Median ratio "
                        f"{ratio_text(tp.get('median_ratio'))} (min {ratio_text(tp.get('min_ratio'))}, "
                        f"max {ratio_text(tp.get('max_ratio'))}).", ""]
        out += ["### Targets", "", "| target | variant | value | result |", "|---|---|---:|---|"]
        for vkey, var in sc["variants"].items():
            for t in var["targets"]:
                out.append(f"| {t['target']} | {var['title']} | {t['value_text']} | {t['result']} |")
        out.append("")
        if sc.get("notes"):
            out += ["Notes:", ""] + [f"- {n}" for n in sc["notes"]] + [""]
    for name, ex in (result.get("extras") or {}).items():
        out += [f"## Scenario `{name}`: {ex['title']}", "", ex["description"], ""]
        if ex.get("skipped"):
            out += [f"Skipped: {ex['skipped']}", ""]
            continue
        if ex.get("error"):
            out += [f"Failed: {ex['error'].splitlines()[0]}", ""]
            continue
        out += ["| figure | value |", "|---|---:|"]
        for key, title, fmt in ex["figures_shown"]:
            value = ex["figures"].get(key)
            out.append(f"| {title} | {_fmt(value, fmt) if value is not None else '–'} |")
        out.append("")
        if ex.get("targets"):
            out += ["| target | value | result |", "|---|---:|---|"]
            for t in ex["targets"]:
                out.append(f"| {t['target']} | {t['value_text']} | {t['result']} |")
            out.append("")
    problems = result.get("problems") or []
    if problems:
        out += ["## Problems", ""] + [f"- {x}" for x in problems] + [""]
    return "\n".join(out)
