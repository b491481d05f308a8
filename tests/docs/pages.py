"""Run the code blocks of a docs page, in order, as a reader would type them.

Each page runs in a fresh empty folder, its blocks in order; pages run one
after another, and whatever a page started is stopped before the next one.
The conventions a page follows (all visible in the Markdown source):

``python title="app.py"``
    A block with a file title is written to that file (relative to the page's
    folder, parents created). Later blocks and commands use it. ``toml``,
    ``ini`` and any other language with a title are written the same way.

``python`` (no title)
    Runs in one Python process per page, in order, with shared globals, like
    a REPL session: later blocks see earlier definitions. The page's folder is
    the working directory and the first entry of ``sys.path``. A block whose
    first line starts with ``>>>`` is a doctest: each prompt's output is
    checked (``...`` elides text). A ``text title="Output"`` block right after
    a plain block is what that block prints, checked the same way.

``console``
    Lines starting with ``$ `` are commands, run with bash in the page's
    folder with this project's virtualenv first on ``PATH`` (a line ending
    in ``\\`` continues on the next). The lines after a command, up to the next
    ``$ ``, are what it prints (stdout and stderr together): a line that is
    only ``...`` stands for any number of lines, ``...`` inside a line for any
    text. A command with no output shown must exit with status 0; one with
    output shown is judged by its output (so a failure can be shown). A command
    ending in `` &`` runs in the background until the page is done: the page
    goes on once the port named in the command (``--port N``,
    ``SMTPKIT_LISTEN__PORT=N``, ``HOST:PORT``) accepts connections, or, when
    it names none, once the command listens on some port. The output shown
    under it is checked when it has been stopped (SIGINT, then SIGTERM, then
    SIGKILL): at the end of the page, or when a later background command
    wants the port it serves on, as a reader stops one server before
    starting the next. A command wants the port it names, 8025 for
    ``smtpkit run`` without one, else the port numbers in a file of the page
    that it names (``python server.py``).

``<!-- not run: reason -->``
    On the line before a block, skips it (a systemd unit, a fragment, an
    install command). Any other block the runner cannot classify fails the
    page, so nothing is skipped by accident. ``text`` blocks without a title
    are shown for reading and are not run, unless they start with ``$ ``: a
    command shown as text is refused (make it a ``console`` block).

Every wait is bounded (60 s for a block or a command, 20 s for a server to
listen): one that hangs fails the page, naming its line, instead of hanging
the test run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*(?P<attrs>.*?)[ \t]*$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
OUTPUT_TITLE = "Output"
#: Languages whose titled blocks are written to files; other titled blocks too.
READ_ONLY = {"text"}


class PageError(AssertionError):
    """A docs page does not do what it says; the message names the page and line."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    line: int
    lang: str
    title: str | None
    text: str
    skipped: str | None = None
    output: Block | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        """``page.md:LINE`` for messages."""
        return f"{self.page}:{self.line}"


def parse_blocks(page: str, source: str) -> list[Block]:
    """Return the fenced blocks of ``source``, with output blocks attached."""
    lines = source.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        block, index = _read_block(page, lines, index, match)
        blocks.append(block)
    return _attach_outputs(blocks)


def _read_block(page: str, lines: list[str], start: int, match: re.Match[str]) -> tuple[Block, int]:
    indent = match["indent"]
    end = start + 1
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    if end == len(lines):
        raise PageError(f"{page}:{start + 1}: code block is never closed")
    body = [
        line[len(indent) :] if line.startswith(indent) else line for line in lines[start + 1 : end]
    ]
    title = TITLE.search(match["attrs"])
    block = Block(
        page=page,
        line=start + 1,
        lang=match["lang"],
        title=title["title"] if title else None,
        text="\n".join(body) + "\n",
        skipped=_skip_reason(lines, start),
    )
    return block, end + 1


def _skip_reason(lines: list[str], start: int) -> str | None:
    before = start - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None
    match = NOT_RUN.match(lines[before])
    return match["reason"] if match else None


def _attach_outputs(blocks: list[Block]) -> list[Block]:
    result: list[Block] = []
    for block in blocks:
        if block.lang == "text" and block.title == OUTPUT_TITLE and block.skipped is None:
            previous = result[-1] if result else None
            if previous is None or previous.lang != "python" or previous.title is not None:
                raise PageError(
                    f"{block.where}: an Output block must follow an untitled python block"
                )
            result[-1] = dataclasses.replace(previous, output=block)
            continue
        result.append(block)
    return result


def classify(block: Block) -> str:
    """Name what the runner does with ``block``: file, python, doctest, console, skip, read."""
    if block.skipped is not None:
        return "skip"
    if block.title is not None and block.lang not in READ_ONLY:
        return "file"
    if block.lang == "python":
        return "doctest" if block.text.lstrip().startswith(">>>") else "python"
    if block.lang == "console":
        return "console"
    if block.lang == "text" and block.title is None and not block.text.startswith("$ "):
        return "read"
    raise PageError(
        f"{block.where}: cannot run a {block.lang or 'plain'!r} block; give it a file title "
        'or mark it with "<!-- not run: reason -->" on the line before'
    )


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` fits ``expected``: a ``...`` line is any lines, ``...`` any text."""
    pattern = []
    for line in expected.strip("\n").splitlines():
        if line.strip() == "...":
            pattern.append(r"(?:.*\n)*?")
        else:
            parts = [re.escape(part) for part in line.rstrip().split("...")]
            pattern.append(".*".join(parts) + r"\n")
    text = "".join(line.rstrip() + "\n" for line in actual.strip("\n").splitlines())
    return re.fullmatch("".join(pattern), text) is not None
