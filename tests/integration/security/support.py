"""Security suite support: token signers, a throwaway PKI, a database per module and secured hub processes.

Everything here serves the probes in this package: each one attacks a real ``maestro server`` process (with real
PostgreSQL and Mosquitto), as someone on the same network would.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol import events, grpc_codec, types
from protocol.grpc import cloudevent_pb2 as pb
from tests.integration.test_rest_auth import Key

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}


@dataclass(frozen=True)
class Signer:
    """A JWKS file and the key that signs tokens for it."""

    key: Key
    jwks_file: Path

    @classmethod
    def create(cls, directory: Path) -> Signer:
        key = Key("security")
        path = directory / "jwks.json"
        path.write_text(json.dumps({"keys": [key.jwk]}))
        return cls(key=key, jwks_file=path)

    def token(self, subject: str, **claims: Any) -> str:
        return self.key.token(sub=subject, exp=int(time.time()) + 3600, **claims)

    def headers(self, subject: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject)}"}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass(frozen=True)
class Certificate:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """A CA with a server certificate for 127.0.0.1 and client certificates on demand (ECDSA P-256)."""

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca = self._ca.public_bytes(serialization.Encoding.PEM)
        self.ca_file = directory / f"{name}.crt"
        self.ca_file.write_bytes(self.ca)
        server = self.issue("127.0.0.1", server=True)
        self.server_cert_file = directory / "server.crt"
        self.server_key_file = directory / "server.key"
        self.server_cert_file.write_bytes(server.cert)
        self.server_key_file.write_bytes(server.key)

    def issue(self, common_name: str, *, server: bool = False) -> Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        if server:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Certificate(cert=cert.public_bytes(serialization.Encoding.PEM), key=_pem_key(key))

    def channel_credentials(self, client: Certificate | None) -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(self.ca)
        return grpc.ssl_channel_credentials(self.ca, client.key, client.cert)


def spec_request(
    action: str, rid: str, *, source: str, consumer: str, manifests: list[Any] | None = None
) -> pb.PublishRequest:
    """A source's spec CloudEvent (create, update or delete request) for one bundle."""
    event = events.make_event(
        type=types.manifestbundle_type("spec", action),
        source=source,
        data={"manifests": manifests if manifests is not None else [CONFIGMAP], "manifestConfigs": []},
        extensions={types.EXT_RESOURCE_ID: rid, types.EXT_CLUSTER_NAME: consumer},
    )
    return pb.PublishRequest(event=grpc_codec.to_proto(event))


def argv_with(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag``'s value replaced."""
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out
