"""prometheus_text: the strict parser of the text exposition format that the
/metrics tests use. Needs no relay binary."""

import math
import unittest

from prometheus_text import parse, value

GOOD = """\
# HELP mb_messages_received_total Messages accepted from clients.
# TYPE mb_messages_received_total counter
mb_messages_received_total 42
# A plain comment is ignored.

# TYPE mb_queue_size gauge
# HELP mb_queue_size Messages in the queue, by route.\\nSecond line with a \\\\.
mb_queue_size{route="graph"} 3
mb_queue_size{route="smtp",note="a \\"quoted\\" \\\\ value\\nnext"} 0.5
mb_queue_size{ route = "empty" , } -1e3 1700000000000
mb_queue_size{route="nan"} NaN
mb_queue_size{route="inf"} +Inf
mb_queue_size{route="-inf"} -Inf
# TYPE mb_delivery_seconds histogram
# HELP mb_delivery_seconds Time to deliver a message.
mb_delivery_seconds_bucket{provider="graph",le="0.1"} 1
mb_delivery_seconds_bucket{provider="graph",le="1"} 4
mb_delivery_seconds_bucket{provider="graph",le="+Inf"} 5
mb_delivery_seconds_sum{provider="graph"} 7.25
mb_delivery_seconds_count{provider="graph"} 5
mb_delivery_seconds_bucket{provider="gmail",le="0.1"} 0
mb_delivery_seconds_bucket{provider="gmail",le="1"} 0
mb_delivery_seconds_bucket{provider="gmail",le="+Inf"} 0
mb_delivery_seconds_sum{provider="gmail"} 0
mb_delivery_seconds_count{provider="gmail"} 0
# TYPE mb_starts counter
mb_starts 1
# TYPE mb_latency summary
mb_latency{quantile="0.5"} 0.2
mb_latency{quantile="0.99"} 1.5
mb_latency_sum 10
mb_latency_count 20
"""


class AcceptsTest(unittest.TestCase):
    def setUp(self):
        self.families = parse(GOOD)

    def test_families_in_order_with_types_and_help(self):
        self.assertEqual(list(self.families), [
            "mb_messages_received_total", "mb_queue_size", "mb_delivery_seconds",
            "mb_starts", "mb_latency"])
        self.assertEqual(
            [f["type"] for f in self.families.values()],
            ["counter", "gauge", "histogram", "counter", "summary"])
        self.assertEqual(self.families["mb_messages_received_total"]["help"],
                         "Messages accepted from clients.")
        self.assertEqual(self.families["mb_queue_size"]["help"],
                         "Messages in the queue, by route.\nSecond line with a \\.")
        self.assertEqual(self.families["mb_starts"]["help"], "")

    def test_counter(self):
        self.assertEqual(self.families["mb_messages_received_total"]["samples"],
                         [("mb_messages_received_total", {}, 42.0)])
        self.assertEqual(value(self.families, "mb_messages_received_total"), 42.0)
        self.assertEqual(value(self.families, "mb_starts"), 1.0)

    def test_gauge_with_labels_and_escapes(self):
        samples = self.families["mb_queue_size"]["samples"]
        self.assertEqual(len(samples), 6)
        self.assertEqual(samples[0], ("mb_queue_size", {"route": "graph"}, 3.0))
        self.assertEqual(samples[1], ("mb_queue_size",
                                      {"route": "smtp", "note": 'a "quoted" \\ value\nnext'}, 0.5))
        self.assertEqual(samples[2], ("mb_queue_size", {"route": "empty"}, -1000.0))
        self.assertTrue(math.isnan(value(self.families, "mb_queue_size", route="nan")))
        self.assertEqual(value(self.families, "mb_queue_size", route="inf"), math.inf)
        self.assertEqual(value(self.families, "mb_queue_size", route="-inf"), -math.inf)

    def test_histogram(self):
        samples = self.families["mb_delivery_seconds"]["samples"]
        self.assertEqual(len(samples), 10)
        self.assertEqual(samples[0], ("mb_delivery_seconds_bucket",
                                      {"provider": "graph", "le": "0.1"}, 1.0))
        self.assertEqual(value(self.families, "mb_delivery_seconds_bucket",
                               provider="graph", le="+Inf"), 5.0)
        self.assertEqual(value(self.families, "mb_delivery_seconds_sum", provider="graph"), 7.25)
        self.assertEqual(value(self.families, "mb_delivery_seconds_count", provider="gmail"), 0.0)

    def test_summary(self):
        self.assertEqual(value(self.families, "mb_latency", quantile="0.99"), 1.5)
        self.assertEqual(value(self.families, "mb_latency_count"), 20.0)

    def test_value_needs_exact_labels(self):
        with self.assertRaises(KeyError):
            value(self.families, "mb_queue_size")
        with self.assertRaises(KeyError):
            value(self.families, "mb_queue_size", route="graph", extra="x")
        with self.assertRaises(KeyError):
            value(self.families, "mb_queue_size", route="nowhere")
        with self.assertRaises(KeyError):
            value(self.families, "mb_no_such_metric")

    def test_counter_sample_may_carry_total_suffix(self):
        families = parse("# TYPE mb_sent counter\nmb_sent_total 5\n")
        self.assertEqual(families["mb_sent"]["samples"], [("mb_sent_total", {}, 5.0)])

    def test_empty_exposition_and_bytes(self):
        self.assertEqual(parse(""), {})
        self.assertEqual(parse(b"# TYPE a gauge\na 1\n")["a"]["samples"], [("a", {}, 1.0)])

    def test_declared_family_without_samples(self):
        families = parse("# TYPE a gauge\n# HELP a nothing yet\n")
        self.assertEqual(families, {"a": {"type": "gauge", "help": "nothing yet", "samples": []}})


class RejectsTest(unittest.TestCase):
    def rejects(self, text, line):
        with self.assertRaisesRegex(ValueError, rf"^line {line}: ") as ctx:
            parse(text)
        return str(ctx.exception)

    def test_missing_final_newline(self):
        self.rejects("# TYPE a gauge\na 1", 2)
        self.rejects("# TYPE a gauge", 1)

    def test_bad_metric_names(self):
        self.rejects("# TYPE 1a gauge\n", 1)
        self.rejects("# TYPE a-b gauge\n", 1)
        self.rejects("# TYPE a gauge\na-b 1\n", 2)
        self.rejects("# TYPE a gauge\n1a 1\n", 2)
        self.rejects("# HELP a.b text\n", 1)
        self.rejects("# HELP\n", 1)

    def test_bad_label_names(self):
        self.rejects('# TYPE a gauge\na{1x="v"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x-y="v"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{__name__="v"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{="v"} 1\n', 2)

    def test_malformed_label_syntax(self):
        self.rejects('# TYPE a gauge\na{x="v" y="w"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x="v"\n', 2)
        self.rejects('# TYPE a gauge\na{x="v} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x=v} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x="v",,} 1\n', 2)

    def test_bad_escapes_in_label_values(self):
        self.rejects('# TYPE a gauge\na{x="\\t"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x="\\u0041"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x="\\\'"} 1\n', 2)
        self.rejects('# TYPE a gauge\na{x="ends\\\\\\"} 1\n', 2)

    def test_bad_escape_in_help(self):
        self.rejects("# HELP a bad \\t escape\n# TYPE a gauge\n", 1)

    def test_duplicate_label_names(self):
        self.rejects('# TYPE a gauge\na{x="1",x="2"} 1\n', 2)

    def test_sample_without_type(self):
        self.rejects("a 1\n", 1)
        self.rejects("# HELP a only help\na 1\n", 2)
        self.rejects("# TYPE a gauge\na 1\nb 2\n", 3)

    def test_help_without_type(self):
        self.rejects("# HELP a only help\n", 1)
        self.rejects("# HELP a only help\n# TYPE b gauge\nb 1\n", 1)

    def test_type_after_samples(self):
        self.rejects("a 1\n# TYPE a gauge\n", 1)
        # The sample a_total went to the counter a; a TYPE for a_total comes too late.
        self.assertIn("after its samples",
                      self.rejects("# TYPE a counter\na_total 1\n# TYPE a_total counter\n", 3))

    def test_duplicate_type_and_help(self):
        self.rejects("# TYPE a gauge\n# TYPE a gauge\n", 2)
        self.rejects("# TYPE a gauge\na 1\n# TYPE a counter\n", 3)
        self.rejects("# TYPE a gauge\n# HELP a one\n# HELP a two\n", 3)

    def test_bad_type(self):
        self.rejects("# TYPE a gauges\n", 1)
        self.rejects("# TYPE a\n", 1)
        self.rejects("# TYPE a gauge extra\n", 1)

    def test_family_not_contiguous(self):
        self.rejects("# TYPE a gauge\n# TYPE b gauge\na 1\n", 3)
        self.rejects("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n", 5)
        self.rejects("# TYPE a gauge\na 1\n# TYPE b gauge\n# HELP a late\n", 4)

    def test_duplicate_series(self):
        self.rejects("# TYPE a gauge\na 1\na 2\n", 3)
        self.rejects('# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 2\n', 3)
        self.rejects("# TYPE a counter\na_total 1\na_total 1\n", 3)

    def test_values_that_are_not_floats(self):
        for bad in ("one", "1,5", "0x10", "Inf", "inf", "nan", "+-1", "1e", "1_000", "", "1 2 3"):
            with self.subTest(value=bad):
                self.rejects(f"# TYPE a gauge\na {bad}\n", 2)
        self.rejects("# TYPE a gauge\na\n", 2)
        self.rejects("# TYPE a gauge\na 1\r\n", 2)

    def test_timestamps_must_be_integers(self):
        self.assertEqual(parse("# TYPE a gauge\na 1 -5\n")["a"]["samples"], [("a", {}, 1.0)])
        for bad in ("1.5", "1e3", "now", "+Inf"):
            with self.subTest(timestamp=bad):
                self.rejects(f"# TYPE a gauge\na 1 {bad}\n", 2)

    def test_counter_sample_names(self):
        self.rejects("# TYPE a counter\na_count 1\n", 2)
        self.rejects("# TYPE a counter\na_created 1\n", 2)
        self.rejects("# TYPE a gauge\na_total 1\n", 2)

    def test_histogram_sample_names(self):
        self.rejects("# TYPE h histogram\nh 1\n", 2)
        self.rejects("# TYPE h histogram\nh_total 1\n", 2)

    def test_histogram_bucket_rules(self):
        head = "# TYPE h histogram\n"
        tail = "h_sum 1\nh_count 2\n"
        # Accepted as a baseline, so that each rejection below is about one thing.
        parse(head + 'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n' + tail)
        # No le label.
        self.rejects(head + "h_bucket 1\n" + tail, 2)
        # le that is not a float.
        self.rejects(head + 'h_bucket{le="x"} 1\n' + tail, 2)
        # le out of order, or repeated.
        self.rejects(head + 'h_bucket{le="2"} 1\nh_bucket{le="1"} 1\n'
                     'h_bucket{le="+Inf"} 2\n' + tail, 3)
        self.rejects(head + 'h_bucket{le="+Inf"} 2\nh_bucket{le="1"} 1\n' + tail, 3)
        self.rejects(head + 'h_bucket{le="1"} 1\nh_bucket{le="1.0"} 1\n'
                     'h_bucket{le="+Inf"} 2\n' + tail, 3)
        # Counts going down.
        self.rejects(head + 'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', 3)
        # No +Inf bucket.
        self.rejects(head + 'h_bucket{le="1"} 2\n' + tail, 2)
        # +Inf bucket and _count disagree.
        self.rejects(head + 'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', 5)
        # _count (or _sum) missing, or without buckets.
        self.rejects(head + 'h_bucket{le="+Inf"} 2\nh_sum 1\n', 2)
        self.rejects(head + 'h_bucket{le="+Inf"} 2\nh_count 2\n', 2)
        self.rejects(head + 'h_bucket{x="a",le="+Inf"} 2\nh_sum{x="a"} 1\nh_count{x="a"} 2\n'
                     'h_sum{x="b"} 1\nh_count{x="b"} 2\n', 6)
        # le on _sum/_count.
        self.rejects(head + 'h_bucket{le="+Inf"} 2\nh_sum{le="+Inf"} 1\nh_count 2\n', 3)

    def test_histogram_checked_per_label_set(self):
        text = ('# TYPE h histogram\n'
                'h_bucket{x="a",le="1"} 1\nh_bucket{x="a",le="+Inf"} 1\n'
                'h_bucket{x="b",le="1"} 5\nh_bucket{x="b",le="+Inf"} 6\n'
                'h_sum{x="a"} 1\nh_count{x="a"} 1\nh_sum{x="b"} 1\nh_count{x="b"} 5\n')
        self.assertIn("differs", self.rejects(text, 9))

    def test_histogram_checked_when_the_next_family_starts(self):
        self.rejects('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'
                     '# TYPE g gauge\ng 1\n', 2)


if __name__ == "__main__":
    unittest.main()
