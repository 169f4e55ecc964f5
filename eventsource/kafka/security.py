"""SASL/SCRAM over TLS for the local broker and cluster: a throwaway CA, certificates, credentials.

``LocalKafka(..., security=LocalSecurity(dir))`` and ``LocalKafkaCluster(..., secure=True)``
run their client listener as ``SASL_SSL`` (SCRAM-SHA-512 over TLS), as managed Kafka
services do, with the standard KRaft authorizer (``StandardAuthorizer``) and no access for
anyone an ACL does not name (``allow.everyone.if.no.acl.found=false``).

What :meth:`LocalSecurity.ensure` makes once in its directory (files readable by the owner
only), with the ``openssl`` command line:

- ``ca.pem`` / ``ca.key``: a CA valid for 30 days; clients trust ``ca.pem``
  (``EVENTSOURCE_SSL_CA_LOCATION``);
- ``broker.p12``: the brokers' key and certificate (subject alternative names ``127.0.0.1``
  and ``localhost``, so clients verify the host name) in a PKCS12 keystore;
- ``credentials.json``: the admin password and the keystore password (random).

The admin user (``admin``) is created by ``kafka-storage format --add-scram`` before the
first start; brokers authenticate to each other as that user and it is a super user.
The KRaft controller listener stays ``PLAINTEXT`` on 127.0.0.1: brokers register with the
controllers as ``User:ANONYMOUS``, which is therefore a super user too. That listener is
not advertised to clients; a production cluster secures it as well (SSL or SASL/PLAIN).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from eventsource.errors import BrokerStartError
from eventsource.kafka.broker_files import find_tool

__all__ = ["ADMIN_USER", "MECHANISM", "LocalSecurity"]

MECHANISM = "SCRAM-SHA-512"
ADMIN_USER = "admin"
_DAYS = "30"


class LocalSecurity:
    """The CA, broker keystore and admin credentials of one local broker or cluster."""

    def __init__(self, directory: Path, mechanism: str = MECHANISM) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.mechanism = mechanism

    def __repr__(self) -> str:
        return f"LocalSecurity(directory={str(self.directory)!r}, mechanism={self.mechanism!r})"

    @property
    def ca_location(self) -> Path:
        """The CA certificate clients trust (PEM)."""
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The brokers' PKCS12 keystore."""
        return self.directory / "broker.p12"

    @property
    def _credentials(self) -> Path:
        return self.directory / "credentials.json"

    def ensure(self) -> None:
        """Make the CA, the broker keystore and the passwords unless they exist already."""
        if self._credentials.exists() and self.keystore.exists() and self.ca_location.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        store_password = secrets.token_hex(16)
        self._make_certificates(store_password)
        self._credentials.write_text(
            json.dumps({"admin_password": secrets.token_hex(16), "keystore": store_password})
        )
        os.chmod(self._credentials, 0o600)

    def _read(self, key: str) -> str:
        try:
            return str(json.loads(self._credentials.read_text())[key])
        except (OSError, ValueError, KeyError) as exc:
            raise BrokerStartError(
                f"the local broker's credentials in {self._credentials} are missing or "
                "unreadable: start the broker with --secure (LocalSecurity) first"
            ) from exc

    @property
    def admin_password(self) -> str:
        """The super user's password (never printed by eventsource)."""
        return self._read("admin_password")

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the admin's SCRAM credential."""
        return [
            "--add-scram",
            f"{self.mechanism}=[name={ADMIN_USER},password={self.admin_password}]",
        ]

    def server_properties(self, port: int, controller_port: int) -> list[str]:
        """Listener, TLS, SASL and authorizer lines of a node's ``server.properties``."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{self.admin_password}";'
        )
        store = self._read("keystore")
        return [
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            f"sasl.enabled.mechanisms={self.mechanism}",
            f"sasl.mechanism.inter.broker.protocol={self.mechanism}",
            f"listener.name.sasl_ssl.{self.mechanism.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={store}",
            f"ssl.key.password={store}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_location}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]

    def client_config(
        self, username: str = ADMIN_USER, password: str | None = None
    ) -> dict[str, Any]:
        """librdkafka properties of a client logging in as ``username`` (default: the admin)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": self.mechanism,
            "sasl.username": username,
            "sasl.password": self.admin_password if password is None else password,
            "ssl.ca.location": str(self.ca_location),
        }

    def environment(
        self, username: str = ADMIN_USER, password: str | None = None
    ) -> dict[str, str]:
        """The ``EVENTSOURCE_*`` variables that make eventsource log in as ``username``."""
        return {
            "EVENTSOURCE_SECURITY_PROTOCOL": "SASL_SSL",
            "EVENTSOURCE_SASL_MECHANISM": self.mechanism,
            "EVENTSOURCE_SASL_USERNAME": username,
            "EVENTSOURCE_SASL_PASSWORD": self.admin_password if password is None else password,
            "EVENTSOURCE_SSL_CA_LOCATION": str(self.ca_location),
        }

    def _make_certificates(self, store_password: str) -> None:
        openssl = find_tool("openssl", "install OpenSSL (Debian: apt-get install -y openssl)")
        d = self.directory
        ext = d / "broker.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "basicConstraints=CA:FALSE\n"
        )
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS,
             "-keyout", d / "ca.key", "-out", d / "ca.pem",
             "-subj", "/CN=eventsource local CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "broker.key",
             "-out", d / "broker.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", d / "broker.csr", "-CA", d / "ca.pem",
             "-CAkey", d / "ca.key", "-CAcreateserial", "-days", _DAYS,
             "-out", d / "broker.pem", "-extfile", ext],
            ["pkcs12", "-export", "-in", d / "broker.pem", "-inkey", d / "broker.key",
             "-certfile", d / "ca.pem", "-name", "broker", "-out", self.keystore,
             "-passout", "env:EVENTSOURCE_KEYSTORE_PASSWORD"],
        ]  # fmt: skip
        env = {**os.environ, "EVENTSOURCE_KEYSTORE_PASSWORD": store_password}
        for step in steps:
            done = subprocess.run(
                [openssl, *map(str, step)], capture_output=True, text=True, env=env, check=False
            )
            if done.returncode != 0:
                raise BrokerStartError(
                    f"openssl {step[0]} failed making the local broker's certificates in {d} "
                    f"(exit code {done.returncode}): {(done.stdout + done.stderr).strip()}"
                )
        for name in ("ca.key", "broker.key", "broker.csr", "broker.p12"):
            if (d / name).exists():
                os.chmod(d / name, 0o600)
