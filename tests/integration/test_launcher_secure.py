"""The single-node launcher with ``--secure``: SASL/SCRAM over TLS, users and ACLs from the CLI.

The same code as the secure cluster (``eventsource.kafka.security``), driven the way a
developer does it: ``eventsource dev kafka start --secure``, ``add-user``, ``grant``, ``stop``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from eventsource.errors import AuthenticationError, AuthorizationError
from eventsource.kafka.access import check_topic_operations
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.reach import check_reachable
from eventsource.kafka.security import LocalSecurity

pytestmark = pytest.mark.integration

BALANCES = "examples.bank.projections:AccountBalances"


def dev_kafka(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventsource.cli.app", "dev", "kafka", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **env},
    )


def test_a_secure_single_broker_takes_users_and_acls_from_the_cli(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    where = ["--port", str(port), "--controller-port", str(controller), "--home", str(tmp_path)]
    started = dev_kafka("start", "--secure", *where)
    try:
        assert started.returncode == 0, started.stderr
        security = LocalSecurity(tmp_path / "security")
        assert "EVENTSOURCE_SECURITY_PROTOCOL=SASL_SSL" in started.stdout
        assert f"EVENTSOURCE_SSL_CA_LOCATION={security.ca_location}" in started.stdout
        assert security.admin_password not in started.stdout + started.stderr

        password = "pw-dev-user-7c1d"
        added = dev_kafka("add-user", "dev", *where, EVENTSOURCE_NEW_USER_PASSWORD=password)
        assert added.returncode == 0, added.stderr
        address = f"127.0.0.1:{port}"
        admin = KafkaSettings(bootstrap_servers=address, kafka_extra=security.client_config())
        # Made after the user: once the broker shows the topic, it applied the user too
        # (it applies its metadata log in order).
        ensure_topic(admin, "dev.events", 1)

        def as_dev(secret: str, ca: Path = security.ca_location) -> KafkaSettings:
            return KafkaSettings(
                bootstrap_servers=address,
                security_protocol="SASL_SSL",
                sasl_mechanism="SCRAM-SHA-512",
                sasl_username="dev",
                sasl_password=SecretStr(secret),
                ssl_ca_location=str(ca),
            )

        with pytest.raises(AuthenticationError, match=f"broker {address} refused the login"):
            check_reachable(as_dev("not-the-password"))
        assert_a_service_with_a_wrong_password_exits_2_leaving_no_client(
            address, security, tmp_path
        )
        other_ca = LocalSecurity(tmp_path / "other-ca")
        other_ca.ensure()
        with pytest.raises(AuthenticationError, match="TLS handshake") as untrusted:
            check_reachable(as_dev(password, other_ca.ca_location))
        assert "EVENTSOURCE_SSL_CA_LOCATION" in str(untrusted.value)
        assert password not in str(untrusted.value)
        check_reachable(as_dev(password))
        with pytest.raises(AuthorizationError, match="lacks READ permission on topic"):
            check_topic_operations(as_dev(password), "dev.events", ("READ",), "reading", 10)

        granted = dev_kafka("grant", "dev", "topic:dev.events", "-o", "READ", *where)
        assert granted.returncode == 0, granted.stderr
        # The broker applies the new ACL from its metadata log a moment after the grant.
        deadline = time.monotonic() + 60
        while True:
            try:
                check_topic_operations(as_dev(password), "dev.events", ("READ",), "reading", 10)
                break
            except AuthorizationError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        stopped = dev_kafka("stop", *where)
        assert stopped.returncode == 0, stopped.stderr


def assert_a_service_with_a_wrong_password_exits_2_leaving_no_client(
    address: str, security: LocalSecurity, tmp_path: Path
) -> None:
    """``eventsource run`` refused at login exits 2, every client it made destroyed first.

    The failed topic listing's client once outlived the service (a KafkaError kept the
    handled exception and its frames alive), its threads retrying the login while the
    interpreter shut down: one run in many died of SIGSEGV after logging exit code 2.
    The service now exits at once, saying so, when any client thread is still there.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env.update(
        EVENTSOURCE_BOOTSTRAP_SERVERS=address,
        EVENTSOURCE_SECURITY_PROTOCOL="SASL_SSL",
        EVENTSOURCE_SASL_MECHANISM="SCRAM-SHA-512",
        EVENTSOURCE_SASL_USERNAME="dev",
        EVENTSOURCE_SASL_PASSWORD="not-the-password",
        EVENTSOURCE_SSL_CA_LOCATION=str(security.ca_location),
        EVENTSOURCE_CONNECT_TIMEOUT_S="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    command = [sys.executable, "-m", "eventsource.cli.app", "run", BALANCES, "-d", db]
    ran = subprocess.run(
        [*command, "--no-http"], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert ran.returncode == 2, ran.stderr[-3000:]
    assert "refused the login" in ran.stderr
    assert "inside the Kafka client" not in ran.stderr, ran.stderr[-3000:]
    assert "Fatal Python error" not in ran.stderr
