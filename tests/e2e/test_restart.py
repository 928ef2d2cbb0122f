"""Messages accepted while the outbox cannot be written stay queued and are
delivered after a restart: a 250 is a promise that survives the process."""

import shutil
import smtplib
import tempfile
import time
import unittest
from pathlib import Path

from harness import Relay, split_received


class RestartTest(unittest.TestCase):
    def test_queued_messages_survive_restart(self):
        work = Path(tempfile.mkdtemp(prefix="mb-restart-"))
        try:
            relay = Relay(workdir=work)
            # Tests run as root, so permissions would not stop the writer: a
            # regular file where the outbox directory should be does.
            relay.outbox.write_text("not a directory")
            relay.start()
            sent = []
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
                for i in range(3):
                    msg = (f"From: a@example.com\r\nTo: b@example.com\r\nSubject: queued {i}\r\n"
                           f"\r\nbody {i}\r\n").encode()
                    self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], msg), {})
                    sent.append(msg)
            self.assertTrue(relay.wait_log(r"cannot|failed|deferred|retry", timeout=10),
                            relay.log())
            self.assertEqual(len(relay.queued_ids()), 3, relay.log())
            self.assertEqual(relay.stop(), 0, relay.log())

            relay.outbox.unlink()
            relay.start()
            delivered = relay.wait_outbox(3)
            self.assertEqual(sorted(split_received(eml)[1] for eml, _ in delivered), sorted(sent))
            self.assertTrue(relay.wait_log(r"3 queued messages recovered"), relay.log())
            for _ in range(100):
                if not relay.queued_ids():
                    break
                time.sleep(0.05)
            self.assertEqual(relay.queued_ids(), [])
            self.assertEqual(relay.stop(), 0, relay.log())
        finally:
            relay.cleanup()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
