"""Certificates for the end-to-end tests, made with the openssl command line
tool (the tests run on the Python standard library alone).

- TestCA: a throw-away certificate authority in a temporary directory and a
  server certificate for 127.0.0.1 / localhost signed by it, for the fake
  servers under tests/fakes/ (the relay trusts them through `ca_file`).
- TestCA.make_client_cert(): a self-signed RSA certificate and key as an app
  registration would hold for certificate credentials, also as PKCS#12, with
  the thumbprints the identity platform names it by (x5t, x5t#S256).
- ClientCert.assertion(): a client assertion (JWT) signed with that key, as a
  confidential client sends to the token endpoint; tests use it to check the
  fake token endpoint, the relay makes its own.
- signed_jwt() / split_jwt(), sign() / verify(): JWTs and RSA signatures
  (PS256, RS256), for the fakes' token endpoints and the tests of them.

Nothing here talks to the network.
"""

import base64
import contextlib
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "openssl"


def b64url(data):
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def run_openssl(*args, input=None, cwd=None):
    """Runs `openssl args...`; raises RuntimeError with its output on failure."""
    proc = subprocess.run([OPENSSL, *map(str, args)], input=input, cwd=cwd,
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s" % (
            " ".join(map(str, args)), proc.returncode,
            proc.stderr.decode("utf-8", "replace").strip()))
    return proc.stdout


def cert_der(cert_pem):
    """DER bytes of the first certificate in a PEM text."""
    if isinstance(cert_pem, bytes):
        cert_pem = cert_pem.decode("ascii")
    start = cert_pem.index("-----BEGIN CERTIFICATE-----")
    end = cert_pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(cert_pem[start:end] + "\n")


@contextlib.contextmanager
def temp_file(data):
    """The path of a temporary file (mode 0600) holding `data` (bytes, or
    ASCII text such as PEM) for the duration of the block."""
    fd, name = tempfile.mkstemp(prefix="mb-test-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("ascii") if isinstance(data, str) else data)
        yield Path(name)
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass


def thumbprints(der):
    """(x5t#S256, x5t): base64url SHA-256 and SHA-1 of the certificate DER."""
    return b64url(hashlib.sha256(der).digest()), b64url(hashlib.sha1(der).digest())


@dataclass
class ClientCert:
    """A client certificate for certificate credentials."""
    cert_file: Path          # certificate, PEM
    key_file: Path           # private key, PEM (PKCS#8, unencrypted)
    pem_file: Path           # certificate and key in one PEM file
    p12_file: Path           # PKCS#12 with both
    p12_password: str        # its password ("" for none)
    cert_pem: str
    der: bytes
    x5t_s256: str            # base64url SHA-256 of the DER (header x5t#S256)
    x5t: str                 # base64url SHA-1 of the DER (header x5t)
    sha1_hex: str            # the thumbprint as the Entra portal shows it

    def assertion(self, client_id, audience, alg="PS256", lifetime=600, nbf=None, exp=None,
                  jti=None, claims=None, header=None):
        """A client assertion JWT signed with this key. `alg` PS256 puts
        x5t#S256 in the header, RS256 puts x5t. `claims` / `header` add or
        replace entries (a value None removes one)."""
        now = int(time.time())
        hdr = {"alg": alg, "typ": "JWT"}
        if alg == "PS256":
            hdr["x5t#S256"] = self.x5t_s256
        else:
            hdr["x5t"] = self.x5t
        body = {"aud": audience, "iss": client_id, "sub": client_id,
                "jti": jti or str(uuid.uuid4()),
                "nbf": now if nbf is None else nbf,
                "exp": (now if nbf is None else nbf) + lifetime if exp is None else exp,
                "iat": now}
        return signed_jwt(hdr, body, lambda data: sign(self.key_file, data, alg),
                          header, claims)


def signed_jwt(header, claims, signer, header_changes=None, claim_changes=None):
    """A JWS compact serialization of the JSON `header` and `claims`,
    signed with signer(signing input bytes) -> signature bytes.
    `header_changes` / `claim_changes` add or replace entries (a value None
    removes one), for tokens a test wants wrong."""
    header, claims = dict(header), dict(claims)
    for changes, dst in ((header_changes or {}, header), (claim_changes or {}, claims)):
        for k, v in changes.items():
            if v is None:
                dst.pop(k, None)
            else:
                dst[k] = v
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(signer(signing_input.encode("ascii")))


def split_jwt(token):
    """(header dict, claims dict, signing input bytes, signature bytes) of a
    JWS compact serialization; ValueError when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not three parts")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    signature = b64url_decode(parts[2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header or claims not a JSON object")
    return header, claims, (parts[0] + "." + parts[1]).encode("ascii"), signature


def _padding(alg):
    """openssl dgst options for an RSA signature algorithm."""
    if alg == "PS256":      # RSASSA-PSS, SHA-256, salt length 32
        return ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"]
    if alg == "RS256":      # PKCS#1 v1.5, SHA-256
        return []
    raise ValueError("unsupported alg " + alg)


def sign(key_file, data, alg="PS256"):
    """Signature over `data` with an RSA key: PS256 (RSASSA-PSS, SHA-256,
    salt length 32) or RS256 (PKCS#1 v1.5, SHA-256)."""
    return run_openssl("dgst", "-sha256", "-sign", key_file, *_padding(alg), input=data)


def verify(pubkey_file, data, signature, alg="PS256"):
    """True when `signature` is a valid `alg` signature (as sign() makes)
    of `data` by the key whose public key (PEM) is in `pubkey_file`."""
    with temp_file(signature) as sig:
        try:
            out = run_openssl("dgst", "-sha256", "-verify", pubkey_file, "-signature", sig,
                              *_padding(alg), input=data)
        except RuntimeError:
            return False
    return b"Verified OK" in out


class TestCA:
    """A certificate authority and a server certificate in a temporary
    directory. `ca_file` is what clients trust; `cert_file` / `key_file` are
    for the fake servers (SAN IP:127.0.0.1, DNS:localhost)."""

    __test__ = False   # not a test case, whatever its name says

    def __init__(self, directory=None):
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="mb-test-ca-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca_file = self.dir / "ca.pem"
        self.key_file = self.dir / "server.key"
        self.cert_file = self.dir / "server.pem"
        self._serial = int(time.time() * 1000) & 0x7FFFFFFFFFFF
        self._make_ca()
        self._make_server_cert()

    def _next_serial(self):
        self._serial += 1
        return "0x%x" % self._serial

    def _make_ca(self):
        run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", self.ca_key, "-out", self.ca_file, "-days", "3650",
                    "-subj", "/CN=Mailbridge Test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-addext", "subjectKeyIdentifier=hash")

    def _make_server_cert(self):
        csr = self.dir / "server.csr"
        ext = self.dir / "server.ext"
        ext.write_text("basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "subjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")
        run_openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", self.key_file, "-out", csr, "-subj", "/CN=localhost")
        run_openssl("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", self.ca_key,
                    "-set_serial", self._next_serial(), "-days", "825", "-sha256",
                    "-extfile", ext, "-out", self.cert_file)
        csr.unlink()

    def server_context(self):
        """An SSLContext for a server presenting the server certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_context(self):
        """An SSLContext for a client that trusts this CA (host names checked)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def make_client_cert(self, name="mailbridge-app", days=365, password="", bits=2048):
        """A self-signed RSA certificate + key (what an app registration's
        certificate credential holds), in PEM and PKCS#12."""
        n = 0
        while (self.dir / f"{name}-{n}.pem").exists():
            n += 1
        stem = f"{name}-{n}"
        key = self.dir / f"{stem}.key"
        cert = self.dir / f"{stem}.pem"
        both = self.dir / f"{stem}-with-key.pem"
        p12 = self.dir / f"{stem}.p12"
        run_openssl("req", "-x509", "-newkey", f"rsa:{bits}", "-nodes", "-keyout", key,
                    "-out", cert, "-days", str(days), "-sha256", "-subj", f"/CN={name}",
                    "-set_serial", self._next_serial(),
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", "keyUsage=critical,digitalSignature")
        cert_pem = cert.read_text()
        both.write_text(cert_pem + key.read_text())
        run_openssl("pkcs12", "-export", "-inkey", key, "-in", cert, "-out", p12,
                    "-name", name, "-passout", f"pass:{password}")
        der = cert_der(cert_pem)
        s256, s1 = thumbprints(der)
        return ClientCert(cert_file=cert, key_file=key, pem_file=both, p12_file=p12,
                          p12_password=password, cert_pem=cert_pem, der=der,
                          x5t_s256=s256, x5t=s1,
                          sha1_hex=hashlib.sha1(der).hexdigest().upper())

    def cleanup(self):
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
