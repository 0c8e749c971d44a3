"""Certificates for the TLS tests, made with ``cryptography``: CAs, server certificates
for 127.0.0.1/localhost and client certificates, written as PEM files."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from tests.conftest import Server


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


@dataclass
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass
class CA:
    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    #: The CA's certificate as a PEM file (what ``tls.ca`` / ``tls_ca`` name).
    pem: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> CA:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        pem = directory / f"{name}.pem"
        pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(name, key, certificate, pem)

    def issue(self, common_name: str, *, server: bool = False) -> Issued:
        """A certificate for ``common_name`` signed by this CA: a server certificate
        (for 127.0.0.1, ::1 and localhost) or a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            names = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        directory = self.pem.parent
        stem = f"{self.name}-{common_name}"
        cert, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return Issued(cert, key_path)


def write_crl(
    ca: CA,
    path: Path,
    revoked: tuple[Issued, ...] = (),
    next_update: dt.timedelta = dt.timedelta(days=1),
) -> Path:
    """A PEM CRL signed by ``ca`` that revokes the ``revoked`` certificates, its next
    update ``next_update`` from now (negative: expired)."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now + min(next_update, dt.timedelta()) - dt.timedelta(minutes=5))
        .next_update(now + next_update)
    )
    for issued in revoked:
        serial = x509.load_pem_x509_certificate(issued.cert.read_bytes()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def client_context(ca: CA, client: Issued | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` for the server, with ``client``'s certificate."""
    context = ssl.create_default_context(cafile=str(ca.pem))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


@dataclass
class Pki:
    """The tests' certificates: the compute node's CA and certificate, the CA of the
    web nodes' client certificates, and another CA nobody trusts."""

    server_ca: CA
    server: Issued
    client_ca: CA
    web: Issued
    #: Signed by client_ca, another common name.
    intruder: Issued
    other_ca: CA
    #: "web-node" again, but signed by other_ca.
    forged: Issued

    @classmethod
    def create(cls, directory: Path) -> Pki:
        server_ca = CA.create(directory, "compute-ca")
        client_ca = CA.create(directory, "web-ca")
        other_ca = CA.create(directory, "other-ca")
        return cls(
            server_ca=server_ca,
            server=server_ca.issue("localhost", server=True),
            client_ca=client_ca,
            web=client_ca.issue("web-node"),
            intruder=client_ca.issue("intruder"),
            other_ca=other_ca,
            forged=other_ca.issue("web-node"),
        )

    def compute_settings(self, client: str = "require") -> dict[str, object]:
        """A compute node's settings: TLS only, client certificates of client_ca."""
        return {
            "tls.cert": str(self.server.cert),
            "tls.key": str(self.server.key),
            "tls.ca": str(self.client_ca.pem),
            "tls.client": client,
            "tls.only": True,
        }


def start_tls_rexec(directory: Path, **settings: object) -> Server:
    """``rexec serve`` with ``tls.only``: no plain port, so the fixture waits for the
    log line of a started node instead of a greeting; ``server.port`` is its TLS port."""
    import tempfile
    import time

    from bench import servers
    from tests.conftest import Server, free_port, write_config

    tls_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rexec-test-"))
    workdir.chmod(0o755)  # the shells' account must reach it
    (directory / "work").symlink_to(workdir)
    values = {
        "server.port": free_port(),
        "session.workdir": str(workdir),
        "tls.port": tls_port,
        "tls.only": True,
        "metrics.port": 0,
        **settings,
    }
    config = write_config(directory, values)
    started = servers.launch(
        "rexec", tls_port, servers.rexec_serve(config), directory / "rexec.log"
    )
    server = Server(started.name, tls_port, started.process, started.log)
    server.plain_port = values["server.port"]  # type: ignore[attr-defined]  # closed
    deadline = time.monotonic() + 60
    while "rexec compute node listening on" not in server.log_text():
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError("rexec did not start:\n" + server.log_text())
        time.sleep(0.1)
    return server
