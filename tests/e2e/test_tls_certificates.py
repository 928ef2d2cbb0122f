"""Certificates from PEM files and from PKCS#12, and their reload on SIGHUP,
seen by a client through the real binary."""

import signal
import socket
import ssl
import subprocess
import tempfile
import shutil
import time
import unittest
from pathlib import Path

from harness import Relay


def make_cert(dir, name):
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=relay.test", "-addext", "subjectAltName=DNS:relay.test",
         "-days", "30", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def served_certificate(port, cafile):
    """DER of the certificate the relay presents on an implicit-TLS port."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="relay.test") as tls:
            return tls.getpeercert(binary_form=True)


def der(pem_path):
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())


def tls_listeners():
    return [{"name": "smtps", "address": "127.0.0.1:0", "tls": "implicit", "auth": "none"}]


class CertificateTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mb-certs-"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_pem_and_reload_on_sighup(self):
        cert_a, key_a = make_cert(self.dir, "a")
        cert_b, key_b = make_cert(self.dir, "b")
        live_cert, live_key = self.dir / "live.pem", self.dir / "live.key"
        shutil.copy(cert_a, live_cert)
        shutil.copy(key_a, live_key)
        with Relay(listeners=tls_listeners(),
                   tls={"cert_file": str(live_cert), "key_file": str(live_key)}) as relay:
            port = relay.ports["smtps"]
            self.assertEqual(served_certificate(port, cert_a), der(cert_a))
            # A renewal replaces the files in place, then signals the relay.
            shutil.copy(cert_b, live_cert)
            shutil.copy(key_b, live_key)
            relay.proc.send_signal(signal.SIGHUP)
            self.assertTrue(relay.wait_log(r"TLS certificate reloaded"), relay.log())
            self.assertEqual(served_certificate(port, cert_b), der(cert_b))
            # A broken renewal keeps the certificate that works.
            live_key.write_text("not a key\n")
            relay.proc.send_signal(signal.SIGHUP)
            self.assertTrue(relay.wait_log(r"not reloaded, keeping the old one"), relay.log())
            self.assertEqual(served_certificate(port, cert_b), der(cert_b))

    def test_pkcs12_with_password_file(self):
        cert, key = make_cert(self.dir, "p")
        p12 = self.dir / "relay.p12"
        subprocess.run(["openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
                        "-out", str(p12), "-passout", "pass:s3cret-p12"],
                       check=True, capture_output=True)
        pw = self.dir / "p12.pass"
        pw.write_text("s3cret-p12\n")
        with Relay(listeners=tls_listeners(),
                   tls={"pkcs12_file": str(p12), "pkcs12_password_file": str(pw)}) as relay:
            self.assertEqual(served_certificate(relay.ports["smtps"], cert), der(cert))
            self.assertNotIn("s3cret-p12", relay.log())

    def test_wrong_pkcs12_password_stops_start_without_telling_it(self):
        cert, key = make_cert(self.dir, "w")
        p12 = self.dir / "relay.p12"
        subprocess.run(["openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
                        "-out", str(p12), "-passout", "pass:right-one"],
                       check=True, capture_output=True)
        relay = Relay(listeners=tls_listeners(),
                      tls={"pkcs12_file": str(p12), "pkcs12_password": "wrong-one"})
        try:
            with self.assertRaises(RuntimeError) as cm:
                relay.start()
            self.assertIn("TLS certificate", str(cm.exception))
            self.assertNotIn("wrong-one", relay.log())
        finally:
            relay.cleanup()

    def test_self_signed_certificate_is_made_once(self):
        relay = Relay(listeners=tls_listeners())
        try:
            relay.start()
            cert = relay.state_dir / "tls" / "cert.pem"
            first = served_certificate(relay.ports["smtps"], cert)
            self.assertEqual(first, der(cert))
            self.assertEqual((relay.state_dir / "tls" / "key.pem").stat().st_mode & 0o777, 0o600)
            self.assertEqual(relay.stop(), 0)
            relay.start()
            self.assertEqual(served_certificate(relay.ports["smtps"], cert), first)
            self.assertEqual(relay.stop(), 0)
        finally:
            relay.cleanup()


if __name__ == "__main__":
    unittest.main()
