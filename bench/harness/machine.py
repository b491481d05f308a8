"""A description of the machine and software a run measured, for the published figures."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from . import paths

_VERSIONS = """
import json, platform, sys
from importlib import metadata
out = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        try:
            out[name] = __import__(name).__version__
        except Exception:
            pass
print(json.dumps(out))
"""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions(python: str, packages: list[str]) -> dict[str, str]:
    try:
        result = subprocess.run(
            [python, "-c", _VERSIONS, *packages],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=dict(os.environ, PYTHONPATH=str(paths.REPO_DIR)),
        )
        found: dict[str, str] = json.loads(result.stdout)
        return found
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return {}


def postfix_version() -> str:
    """Postfix's version (smtp-source and smtp-sink come with it), or "unknown"."""
    for argv in (
        ["postconf", "-dh", "mail_version"],
        ["dpkg-query", "-W", "-f=${Version}", "postfix"],
    ):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        if result.stdout.strip():
            return result.stdout.strip()
    return "unknown"


def describe() -> dict[str, str]:
    """The facts a reader needs to compare figures: CPUs, kernel, interpreters, versions."""
    project = _versions(paths.project_python(), ["smtpkit", "uvloop"])
    peers = _versions(paths.peers_python(), ["aiosmtpd", "uvloop"])
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": project.get("python", "unknown"),
        "smtpkit": project.get("smtpkit", "unknown"),
        "uvloop": project.get("uvloop", "unknown"),
        "aiosmtpd": peers.get("aiosmtpd", "not installed"),
        "peers_uvloop": peers.get("uvloop", "not installed"),
        "postfix": postfix_version(),
    }


def summary(info: dict[str, str]) -> str:
    """One line describing the machine, for the top of the tables."""
    return (
        f"{info['cpus']} x {info['cpu_model']}, {info['kernel']}, Python {info['python']}; "
        f"smtpkit {info['smtpkit']}, aiosmtpd {info['aiosmtpd']}, uvloop {info['uvloop']}, "
        f"Postfix {info['postfix']} (smtp-source, smtp-sink)"
    )
