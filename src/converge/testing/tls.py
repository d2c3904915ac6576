"""A throw-away certificate authority for tests: a CA, a server certificate for 127.0.0.1 and a client
certificate, written as PEM files (keys of mode 0600).

Why: TLS to the controller is tested over real sockets against a real process (``FabricProcess`` with
``tls=``), so the test needs real certificates signed by a CA of its own. Called by the functional TLS
tests; ``cryptography`` (in the lock, via Neutron's dependencies) is imported only when a PKI is made.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Pki:
    """PEM files in one folder: ``ca`` (certificate only), the server's and the client's certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path, *, name: str = "converge-test") -> Pki:
    """A fresh CA named ``name`` that signed a server certificate (``localhost``, 127.0.0.1) and a client
    certificate, valid for a day."""
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(f"{name} CA", ca_key, ca_key, issuer=f"{name} CA", ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("127.0.0.1", server_key, ca_key, issuer=f"{name} CA", server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(f"{name} client", client_key, ca_key, issuer=f"{name} CA")
    pki = Pki(ca=folder / "ca.pem", server_cert=folder / "server.pem", server_key=folder / "server-key.pem",
              client_cert=folder / "client.pem", client_key=folder / "client-key.pem")
    _write(pki.ca, _cert_pem(ca_cert))
    _write(pki.server_cert, _cert_pem(server_cert))
    _write(pki.server_key, _key_pem(server_key), secret=True)
    _write(pki.client_cert, _cert_pem(client_cert))
    _write(pki.client_key, _key_pem(client_key), secret=True)
    return pki


def _certificate(subject: str, key: Any, signer: Any, *, issuer: str, ca: bool = False,
                 server: bool = False) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                        critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return data


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return data


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
