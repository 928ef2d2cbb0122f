"""The mail log (tracker) through the real binary: what the relay records in
<state_dir>/tracker.db for mail it accepts and delivers or bounces, and what
the privacy settings change. Read with Python's sqlite3 while the relay runs
(the database is in WAL mode, so a reader never waits)."""

import sqlite3
import time
import unittest

from harness import RawClient, Relay, send_message

SENDER = "scanner@contoso.example"


def message(subject, msg_id):
    return ("From: Scanner <%s>\r\nTo: ok@example.com\r\nSubject: %s\r\nMessage-ID: <%s>\r\n\r\n"
            "page 1\r\n" % (SENDER, subject, msg_id)).encode()


class TrackerTest(unittest.TestCase):
    def relay(self, tracker=None):
        relay = Relay(smtp={"wait_for_delivery": "0s"}, tracker=tracker or {})
        relay.config["providers"][0]["refuse_recipients"] = ["gone@example.com"]
        self.addCleanup(relay.cleanup)
        return relay

    def rows(self, relay, sql, args=()):
        db = sqlite3.connect("file:%s?mode=ro" % (relay.state_dir / "tracker.db"), uri=True)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql, args)]
        finally:
            db.close()

    def wait_status(self, relay, msg_id, status, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.rows(relay, "SELECT * FROM messages WHERE message_id = ?", ("<%s>" % msg_id,))
            if rows and rows[0]["status"] == status:
                return rows[0]
            time.sleep(0.1)
        self.fail("message %s never reached status %s: %r" % (msg_id, status, rows))

    def test_delivered_and_bounced_mail_with_its_metadata(self):
        relay = self.relay()
        with relay:
            code, text = send_message(relay.port, SENDER, ["ok@example.com"],
                                      message("Scan =?UTF-8?Q?f=C3=BCr?= you", "one@contoso.example"))
            self.assertEqual(code, 250, text)
            code, text = send_message(relay.port, SENDER, ["ok@example.com", "gone@example.com"],
                                      message("Second scan", "two@contoso.example"))
            self.assertEqual(code, 250, text)
            one = self.wait_status(relay, "one@contoso.example", "delivered")
            self.assertEqual(one["subject"], "Scan f\u00fcr you")
            self.assertEqual(one["sender"], SENDER)
            self.assertEqual(one["header_from"], SENDER)
            self.assertEqual(one["listener"], relay.config["listeners"][0]["name"])
            self.assertTrue(one["client_ip"].startswith("127.0.0.1"), one["client_ip"])
            self.assertEqual(one["provider"], "outbox")
            self.assertEqual(one["attempts"], 1)
            self.assertIsNotNone(one["delivered_at"])
            self.assertGreater(one["size"], 0)

            two = self.wait_status(relay, "two@contoso.example", "bounced")
            rcpts = self.rows(relay, "SELECT * FROM recipients WHERE message = ? ORDER BY idx", (two["id"],))
            self.assertEqual([(r["address"], r["status"], r["code"]) for r in rcpts],
                             [("ok@example.com", "delivered", 250), ("gone@example.com", "bounced", 550)])
            self.assertEqual(rcpts[1]["enhanced"], "5.1.1")
            events = self.rows(relay, "SELECT * FROM events WHERE message = ?", (two["id"],))
            self.assertEqual(len(events), 2)
            # Metadata only: no body text anywhere in the database.
            db_bytes = b"".join(p.read_bytes() for p in relay.state_dir.glob("tracker.db*"))
            self.assertNotIn(b"page 1", db_bytes)

    def test_a_header_split_across_reads_before_a_large_body_is_summarised(self):
        # The header's empty line arrives split between two writes, and the
        # second write carries 200 KB of body after it: the mail log still
        # gets the header's fields (the capture itself, which keeps only the
        # header section, is unit-tested in every split).
        relay = self.relay()
        with relay:
            client = RawClient(relay.port)
            self.addCleanup(client.close)
            self.assertEqual(client.code(), 220)
            for command, want in ((b"EHLO raw.test", 250), (b"MAIL FROM:<%s>" % SENDER.encode(), 250),
                                  (b"RCPT TO:<ok@example.com>", 250), (b"DATA", 354)):
                client.send(command + b"\r\n")
                self.assertEqual(client.code(), want)
            head = message("Split scan", "split@contoso.example").split(b"\r\n\r\n")[0]
            client.send(head + b"\r\n\r")
            time.sleep(0.3)
            client.send(b"\n" + (b"x" * 998 + b"\r\n") * 200 + b".\r\n")
            self.assertEqual(client.code(), 250)
            row = self.wait_status(relay, "split@contoso.example", "delivered")
            self.assertEqual(row["subject"], "Split scan")
            self.assertEqual(row["header_from"], SENDER)

    def test_privacy_settings_change_what_is_stored(self):
        relay = self.relay({"masking": "partial", "store_subject": False})
        with relay:
            code, text = send_message(relay.port, SENDER, ["ok@example.com"],
                                      message("Salary review for Bob", "three@contoso.example"))
            self.assertEqual(code, 250, text)
            row = self.wait_status(relay, "three@contoso.example", "delivered")
            self.assertEqual(row["subject"], "***")
            self.assertEqual(row["sender"], "s*****r@c*****o.example")
            self.assertEqual(row["header_from"], "s*****r@c*****o.example")
            rcpts = self.rows(relay, "SELECT address FROM recipients WHERE message = ?", (row["id"],))
            self.assertEqual(rcpts, [{"address": "o*@e*****e.com"}])
            db_bytes = b"".join(p.read_bytes() for p in relay.state_dir.glob("tracker.db*"))
            self.assertNotIn(b"Salary", db_bytes)
            self.assertNotIn(SENDER.encode(), db_bytes)

    def test_refused_attempts_are_recorded_unless_turned_off(self):
        import smtplib
        relay = self.relay()
        relay.config["senders"] = {"allowed": ["@contoso.example"]}
        relay.config["recipients"] = {"allowed_domains": ["example.com"]}
        relay.config["smtp"]["max_message_size"] = "1KB"
        with relay:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
                s.ehlo()
                self.assertEqual(s.mail("spoof@evil.example")[0], 550)
                s.rset()
                self.assertEqual(s.mail(SENDER)[0], 250)
                self.assertEqual(s.rcpt("x@elsewhere.example")[0], 550)
                self.assertEqual(s.rcpt("ok@example.com")[0], 250)
                # Without SIZE= on MAIL, so that the content itself is too big.
                code, text = s.data(b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n" + b"y" * 998 + b"\r\n")
                self.assertEqual(code, 552, text)
            deadline = time.monotonic() + 10
            rows = []
            while time.monotonic() < deadline and len(rows) < 3:
                rows = self.rows(relay, "SELECT * FROM rejections ORDER BY time, rowid")
                time.sleep(0.1)
            self.assertEqual([(r["reason"], r["code"], r["enhanced"]) for r in rows],
                             [("sender not allowed", 550, "5.7.1"), ("recipient not allowed", 550, "5.7.1"),
                              ("message too big", 552, "5.3.4")])
            self.assertEqual(rows[0]["sender"], "spoof@evil.example")
            self.assertEqual(rows[1]["recipients"], "x@elsewhere.example")
            self.assertTrue(rows[0]["client_ip"].startswith("127.0.0.1"))
            self.assertEqual(self.rows(relay, "SELECT COUNT(*) AS n FROM messages"), [{"n": 0}])

        quiet = self.relay({"log_rejected": False})
        quiet.config["senders"] = {"allowed": ["@contoso.example"]}
        with quiet:
            with smtplib.SMTP("127.0.0.1", quiet.port, timeout=10) as s:
                s.ehlo()
                self.assertEqual(s.mail("spoof@evil.example")[0], 550)
            code, text = send_message(quiet.port, SENDER, ["ok@example.com"], message("y", "five@contoso.example"))
            self.assertEqual(code, 250, text)
            self.wait_status(quiet, "five@contoso.example", "delivered")
            self.assertEqual(self.rows(quiet, "SELECT COUNT(*) AS n FROM rejections"), [{"n": 0}])

    def test_retention_minus_one_stores_nothing(self):
        relay = self.relay({"retention_days": -1})
        with relay:
            code, text = send_message(relay.port, SENDER, ["ok@example.com"], message("x", "four@contoso.example"))
            self.assertEqual(code, 250, text)
            relay.wait_outbox(1)
            self.assertFalse((relay.state_dir / "tracker.db").exists())


if __name__ == "__main__":
    unittest.main()
