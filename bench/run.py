#!/usr/bin/env python3
"""Benchmark smtpkit against aiosmtpd, Postfix's smtp-sink and the ceiling; print the figures.

    python bench/run.py                 # everything, about 40 minutes on 2 cores
    python bench/run.py --quick         # a short smoke run, about 5 minutes
    python bench/run.py --only throughput,stall --rounds 5
    python bench/run.py --write-docs    # also rewrite the results in docs/performance.md
    python bench/run.py --only cpu,throughput,pipelined \
        --servers smtpkit,smtpkit-mypyc,ceiling,smtp-sink   # with the mypyc build too

See bench/README.md for what each section measures and what the columns mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    apppath,
    bdat,
    bigmsg,
    construct,
    cpu,
    docs,
    durable,
    idle,
    machine,
    paths,
    pipelined,
    procs,
    report,
    stall,
    throughput,
    tls,
)
from harness import servers as server_procs
from harness.context import (
    FULL,
    LOOPS,
    QUICK,
    SECTIONS,
    SERVERS,
    Context,
    pick_cpus,
    with_rounds,
)
from harness.figures import rate, rate_ratio
from harness.servers import smtpkit_importable
from harness.tables import num, table, times

#: Servers measured only when named in --servers: smtpkit imported from the tree that
#: bench/mypyc/build.py compiles with mypyc (--mypyc-dir).
EXTRA_SERVERS = ("smtpkit-mypyc",)

RUNNERS: dict[str, Callable[[Context], Any]] = {
    "throughput": throughput.run,
    "bigmsg": bigmsg.run,
    "idle": idle.run,
    "stall": stall.run,
    "pipelined": pipelined.run,
    "app": apppath.run,
    "durable": durable.run,
    "tls": tls.run,
    "cpu": cpu.run,
    "construct": construct.run,
    "bdat": bdat.run,
}


def _choices(allowed: tuple[str, ...], option: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(item.strip() for item in text.split(",") if item.strip())
        wrong = [item for item in chosen if item not in allowed]
        if wrong or not chosen:
            raise argparse.ArgumentTypeError(
                f"{option}: got {text!r}, expected a comma-separated subset of {','.join(allowed)}"
            )
        return chosen

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (about 5 min)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measurement")
    parser.add_argument(
        "--only",
        type=_choices(SECTIONS, "--only"),
        default=SECTIONS,
        help=f"sections to run, comma-separated (default: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--servers",
        type=_choices(SERVERS + EXTRA_SERVERS, "--servers"),
        default=SERVERS,
        help=f"servers to measure, comma-separated (default: {','.join(SERVERS)}; "
        "also smtpkit-mypyc, the build of bench/mypyc/build.py)",
    )
    parser.add_argument(
        "--mypyc-dir",
        type=Path,
        default=server_procs.MYPYC_DIR,
        metavar="DIR",
        help=f"where smtpkit-mypyc imports smtpkit from (default: {server_procs.MYPYC_DIR})",
    )
    parser.add_argument(
        "--loops",
        type=_choices(LOOPS, "--loops"),
        default=LOOPS,
        help=f"event loops for the Python servers (default: {','.join(LOOPS)})",
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin servers to one CPU and load generators to another"
    )
    parser.add_argument("--no-setup", action="store_true", help="never run bench/setup.sh")
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="re-render a saved run, measure nothing"
    )
    return parser.parse_args(argv)


def _missing_tools() -> list[str]:
    missing = [name for name in ("smtp-source", "smtp-sink") if paths.postfix_tool(name) is None]
    peers = Path(paths.peers_python())
    if (
        not peers.exists()
        or subprocess.run(
            [str(peers), "-c", "import aiosmtpd, uvloop"], capture_output=True, check=False
        ).returncode
    ):
        missing.append("aiosmtpd in bench/.venv-peers")
    return missing


def ensure_tools(setup_allowed: bool) -> None:
    """Make sure the peers are installed, running bench/setup.sh when they are not.

    Raises:
        SystemExit: If something is still missing.
    """
    missing = _missing_tools()
    if missing and setup_allowed:
        print(f"run.py: missing {', '.join(missing)}; running bench/setup.sh", file=sys.stderr)
        subprocess.run(["bash", str(paths.SETUP_SCRIPT)], check=False)
        missing = _missing_tools()
    if missing:
        raise SystemExit(f"run.py: missing {', '.join(missing)}; run bash bench/setup.sh")


def choose_servers(requested: tuple[str, ...], notes: list[str]) -> tuple[str, ...]:
    """Drop smtpkit (with a note) when its server modules do not import.

    Raises:
        SystemExit: If nothing is left to measure.
    """
    left = requested
    for name, compiled in (("smtpkit", False), ("smtpkit-mypyc", True)):
        if name not in left:
            continue
        importable, why = smtpkit_importable(compiled)
        if importable:
            continue
        where = f" from {server_procs.MYPYC_DIR}" if compiled else ""
        notes.append(
            f"{name} was not measured: `import smtpkit.smtp, smtpkit.handlers`{where} "
            f"failed ({why})."
        )
        print(f"run.py: {notes[-1]}", file=sys.stderr)
        left = tuple(server for server in left if server != name)
    if not left:
        raise SystemExit("run.py: nothing to measure")
    return left


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"run.py: stopped by signal {signum}")


def measure(args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    """Run the selected sections and return the run record (what results/*.json holds)."""
    settings = with_rounds(QUICK if args.quick else FULL, args.rounds)
    server_procs.MYPYC_DIR = args.mypyc_dir.resolve()
    ensure_tools(not args.no_setup)
    servers = choose_servers(args.servers, notes)
    paths.RESULTS_DIR.mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = os.getloadavg()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    server_cpu, client_cpu = pick_cpus(args.pin)
    spool_dir = tempfile.mkdtemp(prefix="smtpkit-bench-spool-")
    results: dict[str, Any] = {}
    with open(paths.RESULTS_DIR / f"{stamp}.log", "ab") as log:
        ctx = Context(
            settings=settings,
            servers=servers,
            loops=args.loops,
            log=log,
            server_cpu=server_cpu,
            client_cpu=client_cpu,
            spool_dir=spool_dir,
            smtp_source=paths.postfix_tool("smtp-source") or "smtp-source",
            smtp_sink=paths.postfix_tool("smtp-sink") or "smtp-sink",
        )
        try:
            for section in args.only:
                try:
                    results[section] = RUNNERS[section](ctx)
                except procs.ChildError as exc:
                    notes.append(f"the {section} section failed: {exc}")
                    print(f"run.py: {notes[-1]}", file=sys.stderr)
        finally:
            procs.stop_all()
            shutil.rmtree(spool_dir, ignore_errors=True)
    if server_cpu is not None:
        notes.append(
            f"servers ran pinned to CPU {server_cpu}, load generators to CPU {client_cpu}."
        )
    return {
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "started": started,
        "stamp": stamp,
        "machine": machine.describe(),
        "settings": dataclasses.asdict(settings),
        "servers": list(servers),
        "loops": list(args.loops),
        "notes": notes,
        "results": results,
        "quick": args.quick,
        "load_average": {"start": load_before, "end": os.getloadavg()},
    }


def mypyc_section(run: dict[str, Any]) -> str | None:
    """The compiled build next to smtpkit, the ceiling and smtp-sink, if it was measured."""
    results, loops = run["results"], run["loops"]
    if "smtpkit-mypyc" not in run.get("servers", ()):
        return None
    loads = []
    if "throughput" in results:
        loads.append(("smtp-source, reuse (msg/s)", results["throughput"].get("reuse", {}), 0))
    if "pipelined" in results:
        loads.append(("pipelined (msg/s)", results["pipelined"], 0))
    for load, by_label in results.get("cpu", {}).items():
        loads.append((f"{load} (CPU µs/msg)", by_label, 1))
    rows = []
    for what, by_label, digits in loads:
        for loop in loops:
            kit, fast, ceiling = f"smtpkit/{loop}", f"smtpkit-mypyc/{loop}", f"ceiling/{loop}"
            labels = (kit, fast, ceiling, "smtp-sink")
            # A rate's ratio is "how many times as fast"; for CPU time it is inverted.
            ratios = [(fast, kit), (fast, ceiling), (fast, "smtp-sink")]
            if digits:
                ratios = [(base, fast) for fast, base in ratios]
            rows.append(
                [what, loop]
                + [num(rate(by_label, label), digits) for label in labels]
                + [times(rate_ratio(by_label, a, b)) for a, b in ratios]
            )
    if not rows:
        return None
    header = ["load", "loop", "smtpkit", "smtpkit-mypyc", "ceiling", "smtp-sink"]
    header += ["mypyc ÷ smtpkit", "mypyc ÷ ceiling", "mypyc ÷ smtp-sink"]
    return "\n\n".join(
        [
            "### The mypyc build (bench/mypyc)",
            "Rates, and the server's CPU time per message. The ratios say how many "
            "times as fast the compiled build is (for CPU time: the other server's "
            "time over the build's).",
            table(header, rows),
        ]
    )


def main(argv: list[str]) -> int:
    """Measure (or load a saved run), save it, print the report, optionally update the docs."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.from_json:
        run = json.loads(args.from_json.read_text())
    else:
        run = measure(args, [])
        saved = paths.RESULTS_DIR / f"{run['stamp']}.json"
        saved.write_text(json.dumps(run, indent=1))
        print(f"run.py: raw results in {saved}", file=sys.stderr)
    text = report.render(run)
    compiled = mypyc_section(run)
    if compiled is not None:
        text += "\n\n" + compiled
    print(text)
    if args.write_docs:
        complete = set(SECTIONS) <= set(run["results"])
        docs.publish(paths.DOCS_PAGE, text, quick=bool(run.get("quick")), complete=complete)
        print(f"run.py: updated {paths.DOCS_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("run.py: interrupted; all benchmark processes stopped", file=sys.stderr)
        sys.exit(130)
