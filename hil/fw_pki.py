"""Test equipment for firmware updates: a PKI, signed releases and file servers.

``make_pki(tmp_path)`` builds a manufacturer root CA, an intermediate CA and a firmware
signing certificate (RSA, ECDSA P-256 or P-384), plus the certificates the negative tests
need: an expired and a not-yet-valid signing certificate from the same chain, and a
signing certificate issued by a foreign root. ``Pki.sign(path)`` signs a file the way a
manufacturer does (signature over the SHA-256 of the whole file, base64).

``make_release_tarball(path, version)`` builds a ``.tar.gz`` release for the ``dir`` slot
backend: ``VERSION`` at its root and, optionally, an executable ``health-check`` script.

``FileServer`` (HTTP/HTTPS, with fault injection: dropped connections, stalls, ignored
Range, no Content-Length, redirects, PUT uploads) and ``FtpServer`` (pyftpdlib) serve a
directory on 127.0.0.1 with an ephemeral port from a background thread; use them as
context managers.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import io
import ipaddress
import logging
import random
import socket
import ssl
import tarfile
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa", "ec-p256", "ec-p384"]
Scheme = Literal["pss", "pkcs1"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_CHUNK_BYTES = 1 << 20


def new_key(key_type: KeyType) -> PrivateKey:
    """A fresh private key of ``key_type`` (RSA 2048 bit or an EC key on P-256/P-384)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve: ec.EllipticCurve = ec.SECP256R1() if key_type == "ec-p256" else ec.SECP384R1()
    return ec.generate_private_key(curve)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Manufacturer"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_cert(
    subject: str,
    key: PrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: PrivateKey,
    ca: bool,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """Issue a certificate for ``key`` (self-signed when ``issuer`` is None).

    CA certificates get basicConstraints CA and keyCertSign; leaves get digitalSignature
    and the codeSigning extended key usage.
    """
    public = key.public_key()
    issuer_name = issuer.subject if issuer is not None else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> str:
    """The certificates as one PEM text, in order."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def sign_file(path: Path, key: PrivateKey, scheme: Scheme = "pss") -> str:
    """Base64 signature over the SHA-256 of the whole file at ``path``.

    RSA keys sign with RSA-PSS (MGF1 SHA-256, salt length = digest length) or PKCS#1 v1.5;
    EC keys sign with ECDSA (``scheme`` is ignored).
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
            if scheme == "pss"
            else padding.PKCS1v15()
        )
        signature = key.sign(digest.digest(), pad, prehashed)
    else:
        signature = key.sign(digest.digest(), ec.ECDSA(prehashed))
    return base64.b64encode(signature).decode()


@dataclass(frozen=True)
class Pki:
    """A manufacturer PKI for tests (all PEM texts; ``*_cert_pem`` include the intermediate).

    Attributes:
        root_pem: The manufacturer root CA (install it as ManufacturerRootCertificate).
        root: The same, parsed.
        intermediate_pem: The intermediate CA alone.
        leaf_pem: The signing certificate alone (without the intermediate).
        signing_cert_pem: Signing certificate followed by the intermediate (what a CSMS sends
            in SignedUpdateFirmware.signingCertificate).
        expired_cert_pem: Same key and chain, validity ended a year ago.
        not_yet_valid_cert_pem: Same key and chain, valid from a year from now.
        foreign_root_pem: An unrelated root CA.
        foreign_cert_pem: A signing certificate issued directly by the foreign root.
        signing_key: Private key of the signing certificate(s).
        foreign_key: Private key of ``foreign_cert_pem``.
        root_path: ``root_pem`` written to ``<tmp_path>/pki/root.pem``.
        foreign_root_path: ``foreign_root_pem`` written to ``<tmp_path>/pki/foreign-root.pem``.
    """

    root_pem: bytes
    root: x509.Certificate
    intermediate_pem: str
    leaf_pem: str
    signing_cert_pem: str
    expired_cert_pem: str
    not_yet_valid_cert_pem: str
    foreign_root_pem: bytes
    foreign_cert_pem: str
    signing_key: PrivateKey
    foreign_key: PrivateKey
    root_path: Path
    foreign_root_path: Path

    def sign(self, path: Path, scheme: Scheme = "pss") -> str:
        """Base64 signature of the file by the signing key (see ``sign_file``)."""
        return sign_file(path, self.signing_key, scheme)

    def sign_foreign(self, path: Path, scheme: Scheme = "pss") -> str:
        """Base64 signature of the file by the foreign signing key."""
        return sign_file(path, self.foreign_key, scheme)

    def install_root(self, certs_dir: Path, cert_type: str = "ManufacturerRootCertificate") -> Path:
        """Write the root into ``<certs_dir>/<cert_type>/test-root.pem`` (the vendor's
        pre-installed root) and return that path."""
        folder = certs_dir / cert_type
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "test-root.pem"
        target.write_bytes(self.root_pem)
        return target


def make_pki(tmp_path: Path, key_type: KeyType = "rsa") -> Pki:
    """Build a root -> intermediate -> signing certificate chain of ``key_type`` keys.

    Takes about 0.3 s for RSA (five 2048-bit keys), milliseconds for EC.
    """
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    year = dt.timedelta(days=365)
    root_key, inter_key, leaf_key = new_key(key_type), new_key(key_type), new_key(key_type)
    foreign_key, foreign_leaf_key = new_key(key_type), new_key(key_type)

    root = make_cert(
        "Test Manufacturer Root CA",
        root_key,
        issuer=None,
        issuer_key=root_key,
        ca=True,
        not_before=now - day,
        not_after=now + 10 * year,
    )
    inter = make_cert(
        "Test Firmware Intermediate CA",
        inter_key,
        issuer=root,
        issuer_key=root_key,
        ca=True,
        not_before=now - day,
        not_after=now + 5 * year,
    )

    def leaf(not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
        return make_cert(
            "Test Firmware Signing",
            leaf_key,
            issuer=inter,
            issuer_key=inter_key,
            ca=False,
            not_before=not_before,
            not_after=not_after,
        )

    signing = leaf(now - day, now + year)
    expired = leaf(now - 2 * year, now - year)
    future = leaf(now + year, now + 2 * year)
    foreign_root = make_cert(
        "Other Vendor Root CA",
        foreign_key,
        issuer=None,
        issuer_key=foreign_key,
        ca=True,
        not_before=now - day,
        not_after=now + 10 * year,
    )
    foreign_leaf = make_cert(
        "Other Vendor Firmware Signing",
        foreign_leaf_key,
        issuer=foreign_root,
        issuer_key=foreign_key,
        ca=False,
        not_before=now - day,
        not_after=now + year,
    )
    folder = tmp_path / "pki"
    folder.mkdir(parents=True, exist_ok=True)
    root_path = folder / "root.pem"
    root_path.write_text(pem(root))
    foreign_root_path = folder / "foreign-root.pem"
    foreign_root_path.write_text(pem(foreign_root))
    return Pki(
        root_pem=pem(root).encode(),
        root=root,
        intermediate_pem=pem(inter),
        leaf_pem=pem(signing),
        signing_cert_pem=pem(signing, inter),
        expired_cert_pem=pem(expired, inter),
        not_yet_valid_cert_pem=pem(future, inter),
        foreign_root_pem=pem(foreign_root).encode(),
        foreign_cert_pem=pem(foreign_leaf),
        signing_key=leaf_key,
        foreign_key=foreign_leaf_key,
        root_path=root_path,
        foreign_root_path=foreign_root_path,
    )


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def make_release_tarball(
    path: Path,
    version: str,
    health_check_exit_code: int | None = None,
    *,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a ``dir``-slot release to ``path`` (a ``.tar.gz``) and return ``path``.

    Args:
        path: Output file.
        version: Content of ``VERSION`` (a newline is appended).
        health_check_exit_code: If not None, an executable ``health-check`` shell script
            that prints a line and exits with this code.
        extra_files: More members, name -> content (e.g. ``{"app/main.py": b"..."}``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "VERSION", f"{version}\n".encode())
        if health_check_exit_code is not None:
            script = f"#!/bin/sh\necho 'health-check of {version}'\nexit {health_check_exit_code}\n"
            _add(tar, "health-check", script.encode(), mode=0o755)
        for name, data in (extra_files or {}).items():
            _add(tar, name, data)
    return path


# -- local file servers -------------------------------------------------------------------


@dataclass
class HttpFaults:
    """Faults the ``FileServer`` injects (change them between requests).

    Attributes:
        drop_after_bytes: Close the connection after this many body bytes, for the next
            ``drops`` GET requests.
        drops: How many GETs are still to be dropped.
        stall_after_bytes: Send this many body bytes, then stop sending (connection open)
            until the server closes.
        ignore_range: Answer Range requests with the whole file (200).
        no_content_length: Send no Content-Length (the body ends when the server closes).
        status: Answer every request with this status and no body.
    """

    drop_after_bytes: int | None = None
    drops: int = 1
    stall_after_bytes: int | None = None
    ignore_range: bool = False
    no_content_length: bool = False
    status: int | None = None


@dataclass
class SeenRequest:
    """A request the ``FileServer`` received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _ServerState:
    directory: Path
    faults: HttpFaults = field(default_factory=HttpFaults)
    requests: list[SeenRequest] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _record(self) -> _ServerState:
        state = self.server.state
        with state.lock:
            state.requests.append(SeenRequest(self.command, self.path, dict(self.headers)))
        return state

    def do_GET(self) -> None:
        state = self._record()
        faults = state.faults
        if faults.status is not None:
            self.send_error(faults.status)
            return
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path.removeprefix("/redirect/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = state.directory / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        etag = f'"{size}-{path.stat().st_mtime_ns}"'
        start = 0
        wanted = self.headers.get("Range", "")
        if_range = self.headers.get("If-Range")
        if wanted.startswith("bytes=") and not faults.ignore_range and if_range in (None, etag):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
        if start >= size and start > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if not faults.no_content_length:
            self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", etag)
        self.send_header("Connection", "close")
        self.end_headers()
        limit: int | None = None
        drop = False
        with state.lock:
            if faults.drop_after_bytes is not None and faults.drops > 0:
                faults.drops -= 1
                limit, drop = faults.drop_after_bytes, True
        if faults.stall_after_bytes is not None:
            limit = faults.stall_after_bytes
        sent = 0
        with path.open("rb") as f:
            f.seek(start)
            while chunk := f.read(64 * 1024):
                if limit is not None and sent + len(chunk) > limit:
                    chunk = chunk[: limit - sent]
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    break
        self.wfile.flush()
        if drop:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif faults.stall_after_bytes is not None:
            state.released.wait()

    def do_PUT(self) -> None:
        state = self._record()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if state.faults.status is not None:
            self.send_error(state.faults.status)
            return
        with state.lock:
            state.uploads[self.path] = body
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: _ServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients that hang up (TLS rejected, cancelled downloads) are expected


class FileServer:
    """HTTP(S) server for the files in ``directory`` (127.0.0.1, ephemeral port).

    GET honours ``Range`` (single ``bytes=N-``) and ``If-Range`` (ETag), ``/redirect/X``
    answers 302 to ``/X``, PUT stores the body in ``uploads[path]``. ``faults`` injects
    failures. Use as a context manager; stopping releases stalled responses.
    """

    def __init__(self, directory: Path, *, tls: ssl.SSLContext | None = None) -> None:
        self.state = _ServerState(directory)
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def faults(self) -> HttpFaults:
        return self.state.faults

    @property
    def requests(self) -> list[SeenRequest]:
        return self.state.requests

    @property
    def uploads(self) -> dict[str, bytes]:
        return self.state.uploads

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"{self._scheme}://{host}:{self.port}/{name}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.state.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class FtpServer:
    """pyftpdlib FTP server for ``directory`` on 127.0.0.1 (ephemeral port).

    User ``user`` / password ``secret`` may read and write; anonymous may read.
    """

    USER = "user"
    PASSWORD = "secret"

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():  # pyftpdlib 2.2 still builds on asyncore/asynchat
            warnings.simplefilter("ignore", DeprecationWarning)
            from pyftpdlib.authorizers import DummyAuthorizer
            from pyftpdlib.handlers import FTPHandler
            from pyftpdlib.servers import FTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.USER, self.PASSWORD, str(directory), perm="elradfmwMT")
        authorizer.add_anonymous(str(directory))
        handler = type(
            "Handler", (FTPHandler,), {"authorizer": authorizer, "auth_failed_timeout": 0}
        )
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.address[1])

    def url(self, name: str, *, login: bool = True) -> str:
        auth = f"{self.USER}:{self.PASSWORD}@" if login else ""
        return f"ftp://{auth}127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self._server.close_all()

    def __enter__(self) -> FtpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)


def make_tls_server_context(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for ``127.0.0.1`` / ``localhost``."""
    key = new_key("ec-p256")
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_text(pem(cert))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def write_random_file(path: Path, size_bytes: int, seed: int = 1) -> bytes:
    """Write ``size_bytes`` of deterministic pseudo-random data to ``path``; return it."""
    payload = random.Random(seed).randbytes(size_bytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return payload
