"""A mesh-local certificate authority and the server certificate every node presents.

`ensure_certs` creates, once per mesh, `ca.pem` / `ca-key.pem` and `server.pem` / `server-key.pem` (signed by
that CA, valid for the mesh's host, `localhost`, 127.0.0.1 and every server name) in the mesh's TLS dir, keys
owner-readable only. Clients trust `ca.pem`; nothing leaves the machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from natsmesh.errors import NotRunningError
from natsmesh.local.files import write_private
from natsmesh.model.mesh import Mesh

CA_FILE, CA_KEY = "ca.pem", "ca-key.pem"
SERVER_FILE, SERVER_KEY = "server.pem", "server-key.pem"
VALID_DAYS = 825


@dataclass(frozen=True)
class CertPaths:
    ca: Path
    cert: Path
    key: Path


def paths(mesh: Mesh) -> CertPaths:
    d = mesh.tls_dir
    return CertPaths(ca=d / CA_FILE, cert=d / SERVER_FILE, key=d / SERVER_KEY)


def _names(mesh: Mesh) -> tuple[list[str], list[str]]:
    dns = sorted({"localhost", *(n.name for n in mesh.nodes())})
    ips = {"127.0.0.1"}
    try:
        ipaddress.ip_address(mesh.host)
        ips.add(mesh.host)
    except ValueError:
        dns.append(mesh.host)
    return dns, sorted(ips)


def ensure_certs(mesh: Mesh) -> CertPaths:
    """The mesh's CA and server certificate, created if missing (or if they no longer cover every name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    p = paths(mesh)
    dns, ips = _names(mesh)
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    if p.ca.exists() and (p.ca.parent / CA_KEY).exists():
        ca_cert = x509.load_pem_x509_certificate(p.ca.read_bytes())
        ca_key = serialization.load_pem_private_key((p.ca.parent / CA_KEY).read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"natsmesh {mesh.name} CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_private(p.ca.parent / CA_KEY, key_bytes(ca_key).decode())
        write_private(p.ca, ca_cert.public_bytes(pem).decode())
        p.ca.chmod(0o644)

    if p.cert.exists() and p.key.exists():
        current = x509.load_pem_x509_certificate(p.cert.read_bytes())
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if set(dns) <= set(san.get_values_for_type(x509.DNSName)) and current.issuer == ca_cert.subject:
            return p
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"natsmesh {mesh.name} server")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
        # Routes and leafnode links use the same certificate as client and as server.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(p.key, key_bytes(key).decode())
    write_private(p.cert, cert.public_bytes(pem).decode())
    p.cert.chmod(0o644)
    return p


def cert_texts(mesh: Mesh) -> dict[str, str] | None:
    """The PEM files rendered configs need (created if missing), or None for a plaintext mesh."""
    if not mesh.tls:
        return None
    p = ensure_certs(mesh)
    return {"ca.pem": p.ca.read_text(), "server.pem": p.cert.read_text(), "server-key.pem": p.key.read_text()}


def client_context(mesh: Mesh) -> ssl.SSLContext | None:
    """An SSL context trusting the mesh's CA, or None for a plaintext mesh."""
    if not mesh.tls:
        return None
    ca = paths(mesh).ca
    if not ca.exists():
        raise NotRunningError(f"mesh {mesh.name!r} uses TLS but has no CA at {ca} yet: it has never been started")
    return ssl.create_default_context(cafile=str(ca))
