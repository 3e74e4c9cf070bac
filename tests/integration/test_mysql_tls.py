"""MySQL over TLS: with ``ssl_ca`` in DATABASE_URL, a connection without TLS is refused, never made in clear.

PyMySQL 1.2 (setup.cfg's floor) uses TLS whenever the server offers it, and requires it once an
SSL option is given. The MariaDB of the tests runs without TLS: the refusal is what shows here.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import run_cli


def test_a_database_url_with_ssl_ca_refuses_a_server_that_offers_no_verified_tls(database: str, tmp_path: Path) -> None:
    import trustme

    ca = tmp_path / "ca.pem"  # a CA of its own: no server here has a certificate from it
    trustme.CA().cert_pem.write_to_path(str(ca))

    done = run_cli("list", env={"DATABASE_URL": f"{database}?ssl_ca={ca}"})

    assert done.returncode == 1
    assert "Error: database error (OperationalError)" in done.stderr
    assert "SSL is required but the server doesn't support it" in done.stderr or "CERTIFICATE_VERIFY" in done.stderr
    assert "Traceback" not in done.stderr
    assert run_cli("list").returncode == 0  # the same database without ssl_ca: reachable
