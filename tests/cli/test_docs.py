"""docs/cli.md and docs/deployment.md stay in step with ``--help`` and with deploy/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smtpkit._cli.options import SERVER_FLAGS, env_name

from .helpers import run_once

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*[a-z]|-h)\b")


def help_flags(tmp_path: Path) -> set[str]:
    flags: set[str] = set()
    for command in ([], ["run"], ["routes"], ["check"]):
        result = run_once(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        flags |= set(FLAG.findall(result.stdout))
    return flags


def test_every_flag_in_help_is_documented_and_back(tmp_path: Path) -> None:
    in_help = help_flags(tmp_path)
    documented = set(FLAG.findall(CLI_DOC.read_text()))
    assert {"--port", "--no-implicit-tls", "--rcpt", "--version", "-h"} <= in_help
    assert in_help - documented == set(), "flags missing from docs/cli.md"
    assert documented - in_help == set(), "docs/cli.md describes flags that do not exist"


@pytest.mark.parametrize("flag", SERVER_FLAGS, ids=lambda flag: flag.option)
def test_each_server_flag_row_names_its_variable_and_setting(flag: object) -> None:
    option, path = flag.option, flag.path  # type: ignore[attr-defined]
    rows = [
        line for line in CLI_DOC.read_text().splitlines() if re.match(rf"\| `{option}[ `]", line)
    ]
    assert len(rows) == 1, f"docs/cli.md needs one table row for {option}"
    assert f"| `{env_name(path)}` | `{path}` |" in rows[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_deployment_page_quotes_the_deploy_files() -> None:
    """Every line the page shows from a deploy/ file is in that file."""
    page = DEPLOYMENT_DOC.read_text()
    unit = (ROOT / "deploy" / "smtpkit.service").read_text().splitlines()
    haproxy = [line.strip() for line in (ROOT / "deploy" / "haproxy.cfg").read_text().splitlines()]
    postfix = (ROOT / "deploy" / "postfix" / "main.cf").read_text().splitlines()
    postfix += (ROOT / "deploy" / "postfix" / "transport").read_text().splitlines()
    (ini,) = code_blocks(page, "ini")
    assert [line for line in ini.splitlines() if line not in unit] == []
    quoted = [block for block in code_blocks(page, "text") if "send-proxy-v2" in block]
    assert len(quoted) == 1
    assert [line for line in quoted[0].splitlines() if line.strip() not in haproxy] == []
    postfix_lines = [
        line
        for block in code_blocks(page, "text")
        if "relayhost" in block or "transport" in block
        for line in block.splitlines()
        if line and not line.startswith("#")
    ]
    assert len(postfix_lines) == 4
    assert [line for line in postfix_lines if line not in postfix] == []
