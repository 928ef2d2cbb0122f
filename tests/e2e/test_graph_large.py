"""Graph's draft path through the real binary and the fake Graph over TLS:
messages over sendMail's 3 MB go out as a draft with attachments and upload
sessions (3.5 MB, 20 MB, 100 MB with the relay's peak memory measured), and
`save_to_sent: false` sends through a draft marked delete-after-submit.
Also what the sender hears when the app lacks Mail.ReadWrite or the message
is over the mailbox's size limit."""

import base64
import hashlib
import os
import time
import unittest

from harness import Relay, send_message
from microsoft import CLIENT, SENDER, TENANT, MicrosoftTestCase

SECRET = "Qm8~graph-large-secret-value-987"
MB = 1024 * 1024


def b64_lines(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(parts, to="alice@example.com", subject="scan"):
    """parts: (name, content type, bytes, content id or None)."""
    m = (b"From: Scanner <" + SENDER.encode() + b">\r\nTo: " + to.encode() + b"\r\nSubject: " +
         subject.encode() + b"\r\nMessage-ID: <large-" + os.urandom(4).hex().encode() +
         b"@contoso.example>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n"
         b"--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nScanned pages attached.\r\n")
    for name, ctype, data, cid in parts:
        m += (b"--=_b\r\nContent-Type: " + ctype.encode() + b"; name=\"" + name.encode() +
              b"\"\r\nContent-Transfer-Encoding: base64\r\n")
        if cid:
            m += (b"Content-Disposition: inline; filename=\"" + name.encode() +
                  b"\"\r\nContent-ID: <" + cid.encode() + b">\r\n\r\n")
        else:
            m += b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n\r\n"
        m += b64_lines(data)
    return m + b"--=_b--\r\n"


def memory(pid):
    """(VmRSS, VmHWM) of a process in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


class GraphLargeTest(MicrosoftTestCase):
    def setUp(self):
        super().setUp()
        self.fake.add_app(TENANT, CLIENT, secret=SECRET, roles=("Mail.Send", "Mail.ReadWrite"))
        self.fake.set_max_message_size(200 * MB)

    def relay(self, provider=None, env=None, **overrides):
        p = self.graph_provider(SECRET, **(provider or {}))
        overrides.setdefault("queue", {"retry_delay": "1s", "max_retry_delay": "2s"})
        overrides.setdefault("smtp", {"max_message_size": "160MB", "wait_for_delivery": "0s"})
        relay = Relay(providers=[p], env=env, **overrides)
        self.addCleanup(relay.cleanup)
        return relay

    def send(self, relay, msg, rcpts=("alice@example.com",)):
        return send_message(relay.port, SENDER, rcpts, msg, ["SIZE=%d" % len(msg)], timeout=300)

    def assertAttachments(self, sent, expected):
        """expected: name -> (bytes, inline, content id); all uploaded or posted."""
        got = {a.name: a for a in sent.attachments}
        self.assertEqual(sorted(got), sorted(expected))
        for name, (data, inline, cid) in expected.items():
            a = got[name]
            self.assertEqual(a.size, len(data), name)
            self.assertEqual(a.sha256, hashlib.sha256(data).hexdigest(), name)
            self.assertEqual(a.is_inline, inline, name)
            self.assertEqual(a.content_id, cid, name)

    def test_3_5_mb_through_an_upload_session(self):
        pdf = os.urandom(int(3.5 * MB))
        logo = os.urandom(20000)
        banner = os.urandom(3 * MB + 100)
        msg = multipart([("scan.pdf", "application/pdf", pdf, None),
                         ("logo.png", "image/png", logo, "logo@x"),
                         ("banner.png", "image/png", banner, "banner@x")])
        relay = self.relay()
        with relay:
            code, text = self.send(relay, msg, ["alice@example.com", "bob@example.com"])
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=60)
            self.assertEqual(sent.kind, "draft")
            self.assertEqual(sorted(sent.recipients), ["alice@example.com", "bob@example.com"])
            self.assertTrue(sent.save_to_sent_items)
            # The big parts were uploaded with their names and inline flags;
            # the small inline logo stayed in the draft's MIME with its CID.
            self.assertAttachments(sent, {"scan.pdf": (pdf, False, None),
                                          "banner.png": (banner, True, "banner@x")})
            self.assertEqual({a.via for a in sent.attachments}, {"upload"})
            self.assertIn(b"Content-ID: <logo@x>", sent.mime)
            self.assertIn(b64_lines(logo)[:76], sent.mime)
            self.assertLess(len(sent.mime), 200000)
            self.assertIn(b"Bcc: bob@example.com", sent.mime)
            # Upload URLs get no bearer token.
            puts = self.fake.requests_to("/AttachmentSessions(", "PUT")
            self.assertGreaterEqual(len(puts), 2)
            self.assertFalse(any(e.authorization for e in puts))
            self.assertTrue(all(e.body_length <= 4 * MB for e in puts))
            self.assertEqual(relay.wait_queue_empty(), [])
            self.assertEqual(self.fake.drafts, {})
            self.assertEqual(list((relay.state_dir / "tmp").iterdir()), [])

    def test_20_mb_with_many_parts(self):
        parts = [("a.bin", "application/octet-stream", os.urandom(12 * MB), None),
                 ("b.bin", "application/octet-stream", os.urandom(6 * MB), None),
                 ("c.bin", "application/octet-stream", os.urandom(1 * MB), None),
                 ("d.bin", "application/octet-stream", os.urandom(MB // 2), None),
                 ("e.bin", "application/octet-stream", os.urandom(MB // 2), None)]
        relay = self.relay()
        with relay:
            code, text = self.send(relay, multipart(parts))
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=120)
            self.assertEqual(sent.kind, "draft")
            # Whatever stayed in the skeleton and whatever came out: every
            # part arrived once, intact.
            uploaded = {a.name: a for a in sent.attachments}
            for name, _, data, _ in parts:
                if name in uploaded:
                    self.assertEqual(uploaded[name].sha256, hashlib.sha256(data).hexdigest())
                    self.assertNotIn(b'filename="' + name.encode(), sent.mime)
                else:
                    self.assertIn(b64_lines(data)[:200], sent.mime, name)
            self.assertIn("a.bin", uploaded)
            self.assertIn("b.bin", uploaded)
            self.assertLessEqual(len(sent.mime), 3 * MB)
            self.assertEqual(relay.wait_queue_empty(timeout=30), [])

    def test_100_mb_in_bounded_memory(self):
        # Without ASan's quarantine, freed memory is reused at once, so the
        # peak reflects what is live, as in a release build.
        opts = os.environ.get("ASAN_OPTIONS", "")
        env = {"ASAN_OPTIONS": (opts + ":" if opts else "") +
               "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"}
        relay = self.relay(env=env)
        with relay:
            # A warm-up through the same path, so that one-time allocations
            # (TLS, libcurl, GMime) are not counted.
            code, text = self.send(relay, multipart([("w.bin", "application/pdf",
                                                      os.urandom(4 * MB), None)]))
            self.assertEqual(code, 250, text)
            self.fake.wait_sent(1, timeout=60)
            self.assertEqual(relay.wait_queue_empty(timeout=30), [])
            pid = relay.proc.pid
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            base_rss, _ = memory(pid)

            data = os.urandom(100 * MB)
            msg = multipart([("big.bin", "application/octet-stream", data, None)])
            started = time.monotonic()
            code, text = self.send(relay, msg)
            del msg
            self.assertEqual(code, 250, text)
            sent = self.fake.wait_sent(2, timeout=300)[1]
            elapsed = time.monotonic() - started
            _, peak = memory(pid)
            self.assertAttachments(sent, {"big.bin": (data, False, None)})
            growth = peak - base_rss
            print("\n100 MB message: %.1f s, relay RSS %.1f MB before, peak %.1f MB (+%.1f MB)"
                  % (elapsed, base_rss / MB, peak / MB, growth / MB))
            # A relay that held the message would grow by at least 100 MB.
            self.assertLess(growth, 40 * MB)
            self.assertEqual(relay.wait_queue_empty(timeout=30), [])

    def test_a_large_single_part_message_arrives_as_an_attachment(self):
        log = b"".join(b"line %07d of a long report\r\n" % i for i in range(200000))  # ~5.8 MB
        msg = (b"From: " + SENDER.encode() + b"\r\nTo: alice@example.com\r\nSubject: nightly log\r\n"
               b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + log)
        relay = self.relay()
        with relay:
            code, text = self.send(relay, msg)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=60)
            self.assertEqual(sent.kind, "draft")
            self.assertAttachments(sent, {"message.txt": (log, False, None)})
            self.assertIn(b"Subject: nightly log", sent.mime)

    def test_a_large_forwarded_message_goes_whole_as_an_eml_file(self):
        inner = (b"From: partner@example.org\r\nTo: " + SENDER.encode() + b"\r\nSubject: drawings\r\n"
                 b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                 b64_lines(os.urandom(4 * MB)))
        msg = (b"From: " + SENDER.encode() + b"\r\nTo: alice@example.com\r\nSubject: Fwd: drawings\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"f\"\r\n\r\n"
               b"--f\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
               b"--f\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--f--\r\n")
        relay = self.relay()
        with relay:
            code, text = self.send(relay, msg)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=60)
            [att] = sent.attachments
            self.assertEqual((att.name, att.content_type), ("forwarded message.eml", "message/rfc822"))
            self.assertEqual(att.data, inner)

    def test_save_to_sent_false_uses_a_draft_not_kept(self):
        small = (b"From: " + SENDER.encode() + b"\r\nTo: alice@example.com\r\nSubject: x\r\n\r\n"
                 b"no copy in Sent Items\r\n")
        relay = self.relay(provider={"save_to_sent": False})
        with relay:
            code, text = self.send(relay, small)
            self.assertEqual(code, 250, text)
            [sent] = self.fake.wait_sent(1, timeout=30)
            self.assertEqual(sent.kind, "draft")
            self.assertFalse(sent.save_to_sent_items)
            self.assertTrue(sent.mime.endswith(small))
            self.assertEqual(self.fake.requests_to("/messages/", "PATCH")[0].status, 200)

    def test_missing_mail_readwrite_is_explained(self):
        self.fake.set_app_roles(TENANT, CLIENT, ("Mail.Send",))
        relay = self.relay(smtp={"max_message_size": "160MB", "wait_for_delivery": "20s"})
        with relay:
            code, text = self.send(relay, multipart([("s.pdf", "application/pdf",
                                                      os.urandom(4 * MB), None)]))
            self.assertEqual(code, 550, text)
            self.assertNotIn("Mail.ReadWrite", text)  # details go to the log
            self.assertTrue(relay.wait_log("Mail.ReadWrite"))
            self.assertEqual(self.fake.sent, [])

    def test_over_the_mailbox_limit_is_refused(self):
        self.fake.set_max_message_size(5 * MB)
        relay = self.relay(smtp={"max_message_size": "160MB", "wait_for_delivery": "20s"})
        with relay:
            code, text = self.send(relay, multipart([("s.pdf", "application/pdf",
                                                      os.urandom(6 * MB), None)]))
            self.assertEqual(code, 552, text)
            self.assertTrue(relay.wait_log("ErrorMessageSizeExceeded"))
            # The draft that could not be sent was deleted.
            self.assertEqual(self.fake.drafts, {})


if __name__ == "__main__":
    unittest.main()
