"""A certificate for the TLS benchmarks, made at run time and never kept.

trustme (a test dependency of the project) makes a throw-away CA and a certificate for
``bench.local`` in the project's interpreter; the files go to ``tls/`` in the run's spool
directory, which ``run.py`` deletes when the run ends.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

from . import paths, procs

HOSTNAME = "bench.local"

_MAKE = """
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert(sys.argv[2])
folder = sys.argv[1]
cert.private_key_and_cert_chain_pem.write_to_path(folder + "/server.pem")
cert.private_key_pem.write_to_path(folder + "/server.key")
ca.cert_pem.write_to_path(folder + "/ca.pem")
"""


def files(spool_dir: str, log: IO[bytes]) -> tuple[str, str, str]:
    """Return (certificate chain, private key, CA) PEM paths, making them the first time.

    Raises:
        procs.ChildError: If trustme is missing or fails.
    """
    folder = Path(spool_dir) / "tls"
    chain, key, ca = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    if not (chain.exists() and key.exists() and ca.exists()):
        folder.mkdir(mode=0o700, exist_ok=True)
        result = subprocess.run(
            [paths.project_python(), "-c", _MAKE, str(folder), HOSTNAME],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            log.write(b"certificate: " + result.stderr[-2000:] + b"\n")
            raise procs.ChildError("certificate: trustme failed in the project's interpreter")
    return str(chain), str(key), str(ca)
