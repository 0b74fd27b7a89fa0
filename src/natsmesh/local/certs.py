"""A mesh-local certificate authority, a certificate per node and one per leaf domain's links.

`ensure_certs` creates, once per mesh, in its TLS dir (the platform's copy of everything): the CA (`ca.pem`;
its key `ca-key.pem` never leaves this dir), for every node `<node>.pem` / `<node>-key.pem` naming that node
(server and client use: clients, routes and the hub's leafnode listener verify them), and for every leaf domain
`<domain>-link.pem` / `<domain>-link-key.pem`, the client certificate its leaf links present to the hub. Keys
are owner-readable only. `cert_texts` hands a party's folder the CA certificate and its own keys only.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from natsmesh.errors import NotRunningError
from natsmesh.local.files import write_private
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Node

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.hashes import SHA256

CA_FILE, CA_KEY = "ca.pem", "ca-key.pem"
VALID_DAYS = 825


def node_files(node: str) -> tuple[str, str]:
    """The certificate and key file names of NODE."""
    return f"{node}.pem", f"{node}-key.pem"


def link_files(domain: str) -> tuple[str, str]:
    """The client certificate and key file names of DOMAIN's leaf links."""
    return f"{domain}-link.pem", f"{domain}-link-key.pem"


@dataclass(frozen=True)
class CertPaths:
    ca: Path
    dir: Path

    def node(self, node: str) -> tuple[Path, Path]:
        cert, key = node_files(node)
        return self.dir / cert, self.dir / key

    def link(self, domain: str) -> tuple[Path, Path]:
        cert, key = link_files(domain)
        return self.dir / cert, self.dir / key


def paths(mesh: Mesh) -> CertPaths:
    return CertPaths(ca=mesh.tls_dir / CA_FILE, dir=mesh.tls_dir)


def _node_names(node: Node) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses a node's certificate covers: its name, localhost, and the addresses it is
    dialled and bound on (a wildcard bind names no address of its own)."""
    dns, ips = {"localhost", node.name}, {"127.0.0.1"}
    for address in (node.host, node.bind):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            dns.add(address)
            continue
        if address == node.host or not ip.is_unspecified:
            ips.add(str(ip))
    return sorted(dns), sorted(ips)


class _Authority:
    """The mesh CA, loaded or made, and what it signs."""

    def __init__(self, mesh: Mesh) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.mesh = mesh
        self.now = datetime.datetime.now(datetime.UTC)
        p = paths(mesh)
        if p.ca.exists() and (p.dir / CA_KEY).exists():
            self.cert = x509.load_pem_x509_certificate(p.ca.read_bytes())
            key = serialization.load_pem_private_key((p.dir / CA_KEY).read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.key = key
            return
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"natsmesh {mesh.name} CA")])
        builder = self._builder(name, self.key.public_key()).issuer_name(name)
        self.cert = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, _sha256())
        )
        write_private(p.dir / CA_KEY, _key_pem(self.key))
        write_private(p.ca, _cert_pem(self.cert))
        p.ca.chmod(0o644)

    def _builder(self, subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        from cryptography import x509

        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=VALID_DAYS))
        )

    def issue(
        self, cert_path: Path, key_path: Path, common_name: str, dns: list[str], ips: list[str], server: bool
    ) -> None:
        """A key and certificate signed by the CA, unless the ones at the paths already are and cover DNS and IPS."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if cert_path.exists() and key_path.exists():
            current = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            covered = set(dns) <= set(san.get_values_for_type(x509.DNSName))
            covered &= {ipaddress.ip_address(i) for i in ips} <= set(san.get_values_for_type(x509.IPAddress))
            if covered and current.issuer == self.cert.subject:
                return
        key = ec.generate_private_key(ec.SECP256R1())
        uses = (
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            if server
            else [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
            .issuer_name(self.cert.subject)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
            .sign(self.key, _sha256())
        )
        write_private(key_path, _key_pem(key))
        write_private(cert_path, _cert_pem(cert))
        cert_path.chmod(0o644)


def _sha256() -> SHA256:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return raw.decode()


def _cert_pem(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def ensure_certs(mesh: Mesh) -> CertPaths:
    """The mesh's CA and every node's and leaf link's certificate, created where missing (or where they no longer
    cover their names)."""
    ca = _Authority(mesh)
    p = paths(mesh)
    for node in mesh.nodes():
        dns, ips = _node_names(node)
        ca.issue(*p.node(node.name), f"natsmesh {mesh.name} {node.name}", dns, ips, server=True)
    for domain in mesh.domains:
        ca.issue(*p.link(domain.name), f"natsmesh {mesh.name} {domain.name} link", [domain.name], [], server=False)
    return p


def cert_texts(mesh: Mesh) -> dict[str, str] | None:
    """Every certificate and node or link key by file name (created if missing), or None for a plaintext mesh.
    The CA's key is not among them: it stays in the platform's TLS dir."""
    if not mesh.tls:
        return None
    p = ensure_certs(mesh)
    names = [CA_FILE, *(f for n in mesh.nodes() for f in node_files(n.name))]
    names += [f for d in mesh.domains for f in link_files(d.name)]
    return {name: (p.dir / name).read_text() for name in names}


def client_context(mesh: Mesh) -> ssl.SSLContext | None:
    """An SSL context trusting the mesh's CA, or None for a plaintext mesh."""
    if not mesh.tls:
        return None
    ca = paths(mesh).ca
    if not ca.exists():
        raise NotRunningError(f"mesh {mesh.name!r} uses TLS but has no CA at {ca} yet: it has never been started")
    return ssl.create_default_context(cafile=str(ca))
