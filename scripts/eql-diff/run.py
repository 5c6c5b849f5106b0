#!/usr/bin/env python3
"""Differential test: seqwatch's EQL engine (`seqwatch replay`) against the Python `eql` engine.

For every query of the "must agree" set (eqldiff/queries.py) it generates seeded random streams
on which the two engines' semantics coincide, runs both, compares, and shrinks every
disagreement to a minimal reproduction under OUT/repro/. It then runs the "known differences"
set (eqldiff/known.py), checking that the Python engine still behaves as documented in
docs/eql-differences.md and that seqwatch gives Elasticsearch's result.

Exit status: 0 all agree and every documented difference holds; 1 something disagrees or
fails; 2 seqwatch is missing or its replay command does not work (nothing was compared).

    pip install -r scripts/eql-diff/requirements.txt
    cargo build
    python3 scripts/eql-diff/run.py --cases 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eqldiff import known, queries
from eqldiff.compare import compare, shrink
from eqldiff.gen import generate_stream
from eqldiff.pyengine import run_python
from eqldiff.seqwatch import (
    SeqwatchFailed,
    SeqwatchMissing,
    check_binary,
    replay_hits,
    rule_toml,
    write_ndjson,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class QueryReport:
    """Per-query counts."""

    name: str
    cases: int = 0
    agreements: int = 0
    disagreements: int = 0
    errors: int = 0
    python_results: int = 0
    repros: list[str] = field(default_factory=list)
    first_error: str = ""


def case_seed(seed: int, name: str, index: int) -> int:
    """A stable per-(query, case) seed derived from the run's seed."""
    return zlib.crc32(f"{seed}:{name}:{index}".encode())


def is_sequence(query: str) -> bool:
    """True for sequence queries."""
    return query.lstrip().startswith("sequence")


class Runner:
    """Runs both engines, compares, shrinks and writes reproductions."""

    def __init__(self, binary: Path | None, out: Path, work: Path, model=None):
        self.binary = binary
        self.out = out
        self.work = work
        self.calls = 0
        # in-process stand-in for seqwatch: (hits, query, name) -> results (see --model)
        self.model = model

    @property
    def comparing(self) -> bool:
        """True if there is something to compare the Python engine with."""
        return self.binary is not None or self.model is not None

    def seqwatch(self, hits: list[dict], query: str, name: str) -> list[dict]:
        """seqwatch's results for `hits` (raises SeqwatchFailed)."""
        self.calls += 1
        if self.model is not None:
            return self.model(hits, query, name)
        return replay_hits(self.binary, self.work / "current", hits, query, name, is_sequence(query))

    def disagrees(self, case: queries.QueryCase, hits: list[dict]) -> bool:
        """Shrinking predicate: both engines run and their results differ."""
        try:
            theirs = self.seqwatch(hits, case.es, case.name)
        except SeqwatchFailed:
            return False
        return not compare(run_python(case.py, hits, case.case_insensitive), theirs).agree

    def write_repro(self, case: queries.QueryCase, index: int, seed: int, original: int, hits: list[dict]) -> Path:
        """Write a minimal reproduction directory and return it."""
        ours = run_python(case.py, hits, case.case_insensitive)
        try:
            theirs = self.seqwatch(hits, case.es, case.name)
        except SeqwatchFailed as error:
            theirs = [{"error": str(error)}]
        outcome = compare(ours, theirs)
        directory = self.out / "repro" / f"{case.name}-case{index}"
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        write_ndjson(hits, directory / "events.ndjson")
        (directory / "rule.toml").write_text(rule_toml(case.es, case.name), encoding="utf-8")
        meta = {
            "query_case": case.name,
            "case_index": index,
            "stream_seed": seed,
            "events_before_shrinking": original,
            "events_after_shrinking": len(hits),
            "python_query": case.py,
            "python_case_insensitive": case.case_insensitive,
            "python_results": ours,
            "seqwatch_results": theirs,
            "difference": outcome.describe(),
            "rerun": "seqwatch replay events.ndjson --rule rule.toml --max-alerts 100000",
        }
        (directory / "repro.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return directory

    def run_case(self, case: queries.QueryCase, seed: int, cases: int, events: int, report: QueryReport) -> None:
        """All streams of one query."""
        for index in range(cases):
            stream_seed = case_seed(seed, case.name, index)
            hits = generate_stream(stream_seed, case.stream_options(events))
            ours = run_python(case.py, hits, case.case_insensitive)
            report.cases += 1
            report.python_results += len(ours)
            if not self.comparing:
                continue
            try:
                theirs = self.seqwatch(hits, case.es, case.name)
            except SeqwatchFailed as error:
                report.errors += 1
                report.first_error = report.first_error or str(error)
                continue
            if compare(ours, theirs).agree:
                report.agreements += 1
                continue
            report.disagreements += 1
            minimal = shrink(hits, lambda candidate: self.disagrees(case, candidate))
            directory = self.write_repro(case, index, stream_seed, len(hits), minimal)
            report.repros.append(str(directory))


def check_known(runner: Runner) -> list[tuple[str, str, str]]:
    """Run the known-differences set; returns (id, name, status) rows."""
    rows = []
    for difference in known.KNOWN:
        status = []
        ours = run_python(difference.query, difference.hits, difference.python_case_insensitive)
        if ours != difference.expected_python:
            status.append(f"PYTHON CHANGED: got {json.dumps(ours)}")
        if difference.expected_python == difference.expected_es:
            status.append("NOT A DIFFERENCE: expected results are equal")
        if runner.binary is not None:  # the model knows only the must-agree cases
            try:
                theirs = runner.seqwatch(difference.hits, difference.query, difference.name)
                if theirs != difference.expected_es:
                    status.append(f"SEQWATCH != ES: got {json.dumps(theirs)}, ES gives {json.dumps(difference.expected_es)}")
            except SeqwatchFailed as error:
                status.append(f"SEQWATCH ERROR: {error}")
        rows.append((difference.id, difference.name, "; ".join(status) or "holds"))
    return rows


def preflight(runner: Runner) -> str:
    """Run replay once on an empty stream with the production rule; '' if it works."""
    try:
        runner.seqwatch([], queries.PRODUCTION_RULE, "preflight")
    except SeqwatchFailed as error:
        return str(error)
    return ""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="base seed (default 1)")
    parser.add_argument("--cases", type=int, default=30, help="streams per query (default 30)")
    parser.add_argument("--events", type=int, default=80, help="events per stream (default 80)")
    parser.add_argument("--seqwatch", type=Path, default=REPO_ROOT / "target" / "debug" / "seqwatch",
                        help="seqwatch binary (default target/debug/seqwatch)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "target" / "eql-diff",
                        help="where reproductions and the summary go (default target/eql-diff)")
    parser.add_argument("--only", nargs="*", metavar="NAME", help="run only these must-agree queries")
    parser.add_argument("--python-only", action="store_true",
                        help="run only the Python side (generation, engine, known differences)")
    parser.add_argument("--model", action="store_true",
                        help="compare the sequence queries with the harness's own model of Elasticsearch's "
                             "state machine (tests/fake_seqwatch.py) instead of seqwatch")
    parser.add_argument("--list", action="store_true", help="list the queries and exit")
    args = parser.parse_args(argv)

    if args.list:
        for case in queries.MUST_AGREE:
            print(f"{case.name}\n  es: {case.es}\n  py: {case.py}\n")
        for difference in known.KNOWN:
            print(f"{difference.id} {difference.name}: {difference.query}")
        return 0

    try:
        selected = queries.by_name(args.only)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2

    binary = None
    model = None
    if args.model:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
        import fake_seqwatch

        cases = {case.name: case for case in queries.MUST_AGREE}
        selected = [case for case in selected if is_sequence(case.es)]

        def model(hits, query, name):
            return fake_seqwatch._sequence_results(cases[name], hits, "")
    elif not args.python_only:
        try:
            check_binary(args.seqwatch)
        except SeqwatchMissing as error:
            print(f"error: {error}\nNothing was compared. Use --python-only to run the Python side alone.",
                  file=sys.stderr)
            return 2
        binary = args.seqwatch

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eql-diff-") as work:
        runner = Runner(binary, args.out, Path(work), model)
        if binary is not None:
            problem = preflight(runner)
            if problem:
                print(f"error: seqwatch replay does not work yet: {problem}\nNothing was compared.", file=sys.stderr)
                return 2

        reports = []
        for case in selected:
            report = QueryReport(case.name)
            runner.run_case(case, args.seed, args.cases, args.events, report)
            reports.append(report)
            if not runner.comparing:
                print(f"{case.name:28} cases {report.cases:4}  python results {report.python_results:5}")
            else:
                print(f"{case.name:28} cases {report.cases:4}  agree {report.agreements:4}  "
                      f"disagree {report.disagreements:3}  errors {report.errors:3}  "
                      f"python results {report.python_results:5}", flush=True)
                for directory in report.repros:
                    print(f"    repro: {directory}")
                if report.first_error:
                    print(f"    first error: {report.first_error}")

        print("\nknown differences (docs/eql-differences.md):")
        rows = check_known(runner)
        for identifier, name, status in rows:
            print(f"  {identifier:4} {name:36} {status}")

    summary = {
        "seed": args.seed, "cases_per_query": args.cases, "events_per_stream": args.events,
        "seqwatch": str(binary) if binary else ("model" if model else None),
        "queries": [report.__dict__ for report in reports],
        "known_differences": [{"id": i, "name": n, "status": s} for i, n, s in rows],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    failed_known = [row for row in rows if row[2] != "holds"]
    total = sum(r.cases for r in reports)
    agree = sum(r.agreements for r in reports)
    disagree = sum(r.disagreements for r in reports)
    errors = sum(r.errors for r in reports)
    if not runner.comparing:
        print(f"\nPython side only: {total} streams over {len(reports)} queries; seqwatch not run.")
    else:
        print(f"\n{agree} agreed, {disagree} disagreed, {errors} errors over {total} streams "
              f"and {len(reports)} queries ({runner.calls} replay runs).")
    print(f"known differences: {len(rows) - len(failed_known)} of {len(rows)} hold.")
    print(f"summary: {args.out / 'summary.json'}")
    return 1 if (disagree or errors or failed_known) else 0


if __name__ == "__main__":
    sys.exit(main())
