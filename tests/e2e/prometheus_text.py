"""A strict parser of the Prometheus text exposition format 0.0.4, for the
end-to-end tests of the admin server's /metrics.

    families = parse(text)
    families["mailbridge_messages_received_total"]["type"]    -> "counter"
    value(families, "mailbridge_queue_size")                  -> 3.0
    value(families, "x_bucket", route="graph", le="+Inf")     -> 7.0

parse() raises ValueError("line N: ...") for anything a strict reading of the
format refuses, including things Prometheus itself would let through but our
exporter never writes (a sample without a # TYPE line, HELP or TYPE twice, a
family split in two). Standard library only.

Format: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

import math
import re

__all__ = ["parse", "value"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's ParseFloat takes more spellings ("inf", "Infinity", hex, "1_0"); the
# format's documentation names these, and they are all an exporter should write.
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf")
_TIMESTAMP = re.compile(r"-?[0-9]+")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_BLANKS = " \t"


def _fail(lineno, message):
    raise ValueError(f"line {lineno}: {message}")


def _parse_float(text, lineno, what):
    if not _FLOAT.fullmatch(text):
        _fail(lineno, f"{what} {text!r} is not a float")
    return float(text)


def _unescape(text, lineno, allowed, what):
    """Undoes the escapes of a label value (\\\\, \\", \\n) or a HELP text
    (\\\\, \\n); any other backslash sequence is an error."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            _fail(lineno, f"{what} ends in a lone backslash")
        nxt = text[i + 1]
        if nxt not in allowed:
            _fail(lineno, f"bad escape \\{nxt} in {what}")
        out.append("\n" if nxt == "n" else nxt)
        i += 2
    return "".join(out)


def _skip_blanks(line, i):
    while i < len(line) and line[i] in _BLANKS:
        i += 1
    return i


def _parse_labels(line, i, lineno):
    """Parses `{name="value",...}` starting at line[i] == "{"; returns the
    labels and the index after the "}"."""
    labels = {}
    i += 1
    while True:
        i = _skip_blanks(line, i)
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        m = _LABEL_NAME.match(line, i)
        if not m:
            _fail(lineno, f"bad label name at column {i + 1}")
        name = m.group(0)
        if name.startswith("__"):
            _fail(lineno, f"label name {name!r} is reserved")
        if name in labels:
            _fail(lineno, f"duplicate label {name!r}")
        i = _skip_blanks(line, m.end())
        if i >= len(line) or line[i] != "=":
            _fail(lineno, f"expected '=' after label {name!r}")
        i = _skip_blanks(line, i + 1)
        if i >= len(line) or line[i] != '"':
            _fail(lineno, f"expected '\"' to open the value of label {name!r}")
        # The value runs to the first quote that is not escaped.
        j = i + 1
        while j < len(line) and line[j] != '"':
            j += 2 if line[j] == "\\" else 1
        if j >= len(line):
            _fail(lineno, f"unterminated value of label {name!r}")
        labels[name] = _unescape(line[i + 1:j], lineno, '\\"n', f"value of label {name!r}")
        i = _skip_blanks(line, j + 1)
        if i < len(line) and line[i] == ",":
            i += 1
        elif i < len(line) and line[i] == "}":
            return labels, i + 1
        else:
            _fail(lineno, f"expected ',' or '}}' after the value of label {name!r}")


def _parse_sample(line, lineno):
    m = _METRIC_NAME.match(line)
    if not m:
        _fail(lineno, "bad metric name")
    name = m.group(0)
    i = m.end()
    labels = {}
    j = _skip_blanks(line, i)
    if j < len(line) and line[j] == "{":
        labels, i = _parse_labels(line, j, lineno)
    elif j == i and i < len(line):
        _fail(lineno, f"bad metric name {line[:_token_end(line, 0)]!r}")
    rest = line[i:].strip(_BLANKS)
    if not rest:
        _fail(lineno, f"sample {name} has no value")
    fields = re.split(r"[ \t]+", rest)
    if len(fields) > 2:
        _fail(lineno, f"unexpected text after the sample of {name}: {' '.join(fields[2:])!r}")
    number = _parse_float(fields[0], lineno, "value")
    if len(fields) == 2 and not _TIMESTAMP.fullmatch(fields[1]):
        _fail(lineno, f"timestamp {fields[1]!r} is not an integer")
    return name, labels, number


def _token_end(line, i):
    while i < len(line) and line[i] not in _BLANKS:
        i += 1
    return i


def _show(label_items):
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(label_items)) + "}"


def _series_key(name, labels):
    return name, tuple(sorted(labels.items()))


class _Histogram:
    """Checks of one histogram family, per label set (without le)."""

    def __init__(self):
        self.buckets = {}  # key -> [(le, count, lineno)]
        self.counts = {}  # key -> (value, lineno)
        self.sums = {}  # key -> lineno

    def add(self, family, suffix, labels, number, lineno):
        if suffix == "_bucket":
            if "le" not in labels:
                _fail(lineno, f"{family}_bucket without an le label")
            le = _parse_float(labels["le"], lineno, "le")
            if math.isnan(le):
                _fail(lineno, f"{family}_bucket with le=NaN")
            if math.isnan(number) or number < 0:
                _fail(lineno, f"{family}_bucket count {number} is not a count")
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series = self.buckets.setdefault(key, [])
            if series:
                last_le, last_count, _ = series[-1]
                if le <= last_le:
                    _fail(lineno, f"{family}_bucket le={labels['le']} not above the "
                                  f"previous bucket's")
                if number < last_count:
                    _fail(lineno, f"{family}_bucket le={labels['le']} count {number} below "
                                  f"the previous bucket's {last_count}")
            series.append((le, number, lineno))
            return
        if "le" in labels:
            _fail(lineno, f"{family}{suffix} with an le label")
        key = tuple(sorted(labels.items()))
        if suffix == "_count":
            self.counts[key] = (number, lineno)
        else:
            self.sums[key] = lineno

    def finish(self, family, lineno):
        """Cross-checks at the end of the family (lineno: its last line)."""
        for key in sorted(set(self.buckets) | set(self.counts) | set(self.sums)):
            shown = _show(key)
            series = self.buckets.get(key)
            if not series:
                _fail(self.counts.get(key, (0, lineno))[1],
                      f"histogram {family}{shown} has no buckets")
            last_le, last_count, last_line = series[-1]
            if last_le != math.inf:
                _fail(last_line, f"histogram {family}{shown} has no le=\"+Inf\" bucket")
            if key not in self.counts:
                _fail(last_line, f"histogram {family}{shown} has no _count")
            if key not in self.sums:
                _fail(last_line, f"histogram {family}{shown} has no _sum")
            count, count_line = self.counts[key]
            if count != last_count:
                _fail(max(count_line, last_line),
                      f"histogram {family}{shown}: _count {count} differs from the "
                      f"+Inf bucket {last_count}")


def _allowed_suffixes(kind):
    return {
        "counter": ("", "_total"),
        "gauge": ("",),
        "untyped": ("",),
        "summary": ("", "_sum", "_count"),
        "histogram": ("_bucket", "_sum", "_count"),
    }[kind]


def parse(text):
    """Parses a text exposition; returns {family: {"type", "help", "samples":
    [(sample_name, labels, value)]}} in the order of the input. Raises
    ValueError naming the line of the first thing that is wrong."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    families = {}
    typed = set()  # families with a TYPE line
    helped = {}  # family -> line of its HELP
    sample_names = set()
    series = set()
    histograms = {}
    closed = set()  # families whose block of lines has ended
    current = None
    last_line_of = {}

    if text and not text.endswith("\n"):
        _fail(text.count("\n") + 1, "the exposition does not end with a newline")
    lines = text.split("\n")[:-1] if text else []

    def enter(family, lineno):
        nonlocal current
        if family != current:
            if family in closed:
                _fail(lineno, f"lines of family {family} are not contiguous")
            if current is not None:
                close(current)
            current = family
        last_line_of[family] = lineno
        families.setdefault(family, {"type": None, "help": "", "samples": []})

    def close(family):
        closed.add(family)
        if family not in typed:
            _fail(helped[family], f"family {family} has a HELP but no TYPE line")
        if family in histograms:
            histograms[family].finish(family, last_line_of[family])

    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip(_BLANKS)
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].lstrip(_BLANKS)
            keyword = parts[:_token_end(parts, 0)]
            if keyword not in ("HELP", "TYPE"):
                continue  # an ordinary comment
            rest = parts[len(keyword):].lstrip(_BLANKS)
            name = rest[:_token_end(rest, 0)]
            if not name:
                _fail(lineno, f"{keyword} without a metric name")
            if not _METRIC_NAME.fullmatch(name):
                _fail(lineno, f"bad metric name {name!r} in {keyword}")
            argument = rest[len(name):].lstrip(_BLANKS)
            if keyword == "HELP":
                if name in helped:
                    _fail(lineno, f"second HELP for {name} (first on line {helped[name]})")
                enter(name, lineno)
                helped[name] = lineno
                families[name]["help"] = _unescape(argument, lineno, "\\n", f"HELP of {name}")
            else:
                if name in typed:
                    _fail(lineno, f"second TYPE for {name}")
                if name in sample_names or (name in families and families[name]["samples"]):
                    _fail(lineno, f"TYPE for {name} after its samples")
                if argument not in _TYPES:
                    _fail(lineno, f"bad type {argument!r} for {name}")
                enter(name, lineno)
                typed.add(name)
                families[name]["type"] = argument
                if argument == "histogram":
                    histograms[name] = _Histogram()
            continue

        name, labels, number = _parse_sample(line, lineno)
        family, suffix = _family_of(name, families, typed)
        if family is None:
            _fail(lineno, f"sample {name} has no family declared by a TYPE line before it")
        kind = families[family]["type"]
        if suffix not in _allowed_suffixes(kind):
            _fail(lineno, f"sample {name} does not belong in {kind} family {family}")
        key = _series_key(name, labels)
        if key in series:
            _fail(lineno, f"duplicate series {name}{_show(labels.items())}")
        series.add(key)
        sample_names.add(name)
        enter(family, lineno)
        if kind == "histogram":
            histograms[family].add(family, suffix, labels, number, lineno)
        elif kind == "summary":
            if suffix == "":
                if "quantile" not in labels:
                    _fail(lineno, f"summary sample {name} without a quantile label")
                _parse_float(labels["quantile"], lineno, "quantile")
            elif "quantile" in labels:
                _fail(lineno, f"summary sample {name} with a quantile label")
        families[family]["samples"].append((name, labels, number))

    if current is not None:
        close(current)
    return families


def _family_of(name, families, typed):
    """The declared family a sample name belongs to, and its suffix (which
    the caller checks against the family's type)."""
    if name in typed:
        return name, ""
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[:-len(suffix)]
            if base in typed:
                return base, suffix
    return None, None


def value(families, sample_name, /, **labels):
    """The value of the one sample named `sample_name` whose labels are
    exactly `labels`; KeyError when there is none."""
    for family in families.values():
        for name, sample_labels, number in family["samples"]:
            if name == sample_name and sample_labels == labels:
                return number
    raise KeyError(f"no sample {sample_name}{_show(labels.items())}")
