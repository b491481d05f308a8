"""The plugin under pytest-xdist, and what loading it costs a test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import INI, RunInner


def test_servers_under_xdist_do_not_collide(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makeini(INI)
    records = pytester.path / "records"
    records.mkdir()
    pytester.makepyfile(
        test_parallel=textwrap.dedent(
            f"""
            import os, smtplib, pytest

            @pytest.mark.parametrize("n", range(8))
            @pytest.mark.smtp_server(tls="starttls")
            def test_own_server(smtp_server, smtp_server_factory, n):
                extra = smtp_server_factory(tls="starttls")
                for server in (smtp_server, extra):
                    with smtplib.SMTP(server.host, server.port) as client:
                        client.starttls(context=server.client_tls_context)
                        client.sendmail("a@x.org", ["b@x.org"], f"Subject: {{n}}\\r\\n\\r\\nx")
                    assert [m["Subject"] for m in server.messages] == [str(n)]
                worker = os.environ["PYTEST_XDIST_WORKER"]
                line = f"{{worker}} {{smtp_server.port}} {{extra.port}} {{smtp_server.ca_path}}\\n"
                with open(os.path.join({str(records)!r}, f"{{n}}.txt"), "w") as f:
                    f.write(line)
            """
        )
    )
    result = pytester.runpytest_subprocess("-n", "2", timeout=120)
    result.assert_outcomes(passed=8)
    rows = [path.read_text().split() for path in sorted(records.iterdir())]
    assert len(rows) == 8
    workers = {row[0] for row in rows}
    assert workers == {"gw0", "gw1"}
    # Ports are picked by the system and may be reused once a server stopped;
    # at any one time a worker's two servers differ, and every CA file is its own.
    assert all(row[1] != row[2] for row in rows)
    assert len({row[3] for row in rows}) == 8
    assert not any(Path(row[3]).exists() for row in rows)  # removed with their servers


def test_loading_the_plugin_imports_no_server_code() -> None:
    code = (
        "import sys, smtpkit.testing.plugin\n"
        "print(sorted(m for m in sys.modules if m.startswith('smtpkit')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == str(
        sorted(["smtpkit", "smtpkit._version", "smtpkit.testing", "smtpkit.testing.plugin"])
    )


def test_import_smtpkit_does_not_load_the_test_tools() -> None:
    code = "import sys, smtpkit\nprint('smtpkit.testing' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "False"


def test_the_marker_is_registered_for_strict_markers(
    run_inner: RunInner, pytester: pytest.Pytester
) -> None:
    run_inner(
        """
        import pytest

        @pytest.mark.smtp_server(size_limit=10)
        def test_marked():
            pass
        """,
        passed=1,
    )
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.smtp_server(**options): *"])
