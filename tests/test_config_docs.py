"""Keep docs/configuration.md in step with smtpkit.config.

The settings table is compared row by row with ``config_fields()``; the TOML example must load
and mention every setting; the Python example must run. To print the expected table after
changing a setting, run ``python tests/test_config_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from smtpkit import config as config_module
from smtpkit.config import ServerConfig, config_fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- config-fields:start -->", "<!-- config-fields:end -->"
HEADER = ["| Setting | Type | Default | Meaning |", "| --- | --- | --- | --- |"]


def type_cell(type_text: str) -> str:
    """``int | None`` -> ```int` or `None```: a bare ``|`` would split the table cell."""
    parts = [f"`{part}`" for part in type_text.split(" | ")]
    return " or ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " or " + parts[-1]


def default_cell(value: Any) -> str:
    """The default as it would be written in TOML; None is shown as *unset*."""
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    return f"`{value}`"


def expected_rows() -> list[str]:
    return [
        f"| `{path}` | {type_cell(type_text)} | {default_cell(default)} | {doc} |"
        for path, type_text, default, doc in config_fields()
    ]


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def documented_rows() -> list[str]:
    text = doc_text()
    assert START in text and END in text, f"{DOC} lost its {START} / {END} markers"
    block = text.split(START, 1)[1].split(END, 1)[0].strip().splitlines()
    assert block[:2] == HEADER, "the settings table header changed"
    return block[2:]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", doc_text(), flags=re.S | re.M)


def test_every_setting_is_documented_and_no_row_is_stale() -> None:
    documented = {row.split("`")[1] for row in documented_rows()}
    actual = {path for path, *_ in config_fields()}
    assert not actual - documented, f"settings missing from {DOC.name}: {actual - documented}"
    assert not documented - actual, f"stale rows in {DOC.name}: {documented - actual}"


def test_settings_table_matches_the_code() -> None:
    assert documented_rows() == expected_rows(), "regenerate: python tests/test_config_docs.py"


def test_smtp_argument_table_matches_the_code() -> None:
    text = doc_text().split("<!-- smtp-kwargs:start -->", 1)[1].split("<!-- smtp-kwargs:end -->")[0]
    pairs = dict(re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", text, flags=re.M))
    assert pairs == config_module._SMTP_KWARGS
    assert set(pairs) == set(ServerConfig().to_smtp_kwargs())


def test_toml_example_loads_and_mentions_every_setting(tmp_path: Path) -> None:
    (example,) = [block for block in code_blocks("toml") if "[workers]" in block]
    path = tmp_path / "smtpkit.toml"
    path.write_text(example, encoding="utf-8")
    config = ServerConfig.load(path, env={})
    assert config != ServerConfig()
    section = ""
    mentioned = set()
    for line in example.splitlines():
        if header := re.match(r"^\[(\w+)\]", line):
            section = header.group(1) + "."
        elif key := re.match(r"^#?\s*(\w+)\s*=", line):
            mentioned.add(section + key.group(1))
    settable = {path for path, _, _, doc in config_fields() if "Python only" not in doc}
    assert settable - mentioned == set(), "settings missing from the TOML example"
    assert mentioned - settable == set(), "unknown keys in the TOML example"


def test_python_example_runs() -> None:
    blocks = [block for block in code_blocks("python") if "ServerConfig(" in block]
    assert blocks
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert isinstance(namespace["config"], ServerConfig)


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, "*unset*"), (True, "`true`"), ("a", '`"a"`'), ((), "`[]`"), (1.5, "`1.5`")],
)
def test_default_cells(value: Any, cell: str) -> None:
    assert default_cell(value) == cell


def test_type_cells() -> None:
    assert type_cell("int") == "`int`"
    assert type_cell("str | None") == "`str` or `None`"
    assert type_cell("int | dict[str, int] | None") == "`int`, `dict[str, int]` or `None`"


if __name__ == "__main__":
    print("\n".join([START, *HEADER, *expected_rows(), END]))
