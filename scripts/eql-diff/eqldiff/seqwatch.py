"""Runs `seqwatch replay` over a stream: writes the NDJSON and the rule TOML, parses the output.

The replay contract: `seqwatch replay EVENTS.ndjson --rule RULE.toml --max-alerts N`
prints, for a sequence rule, one JSON object per line `{"join_keys": [...], "events":
[{"_index", "_id"}, ...]}` (events in stage order, sequences ascending by their last event);
for an event query one `{"_index", "_id"}` per matching event. Replay uses input order as the
implicit tiebreaker, so the NDJSON is written in exactly the order the Python engine reads.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

#: Large enough that no cap applies (the Python engine has none).
MAX_ALERTS = 100000


class SeqwatchMissing(Exception):
    """The seqwatch binary does not exist or is not executable."""


class SeqwatchFailed(Exception):
    """seqwatch ran but failed, or printed something that breaks the replay contract."""


def write_ndjson(hits: list[dict], path: Path) -> None:
    """Write hits one JSON object per line, in order."""
    with open(path, "w", encoding="utf-8") as out:
        for hit in hits:
            out.write(json.dumps({"_index": hit["_index"], "_id": hit["_id"], "_source": hit["_source"]},
                                 sort_keys=True))
            out.write("\n")


def read_ndjson(path: Path) -> list[dict]:
    """Read hits written by `write_ndjson` (used to re-run a saved reproduction)."""
    with open(path, encoding="utf-8") as source:
        return [json.loads(line) for line in source if line.strip()]


def rule_toml(query: str, name: str) -> str:
    """A detection-rules TOML file holding `query` (a literal multi-line string)."""
    if "'''" in query:
        raise ValueError(f"query {name!r} contains ''' and cannot be written as a TOML literal string")
    return f"""[metadata]
creation_date = "2025/01/01"

[rule]
name = {json.dumps(name)}
rule_id = "diff-1"
type = "eql"
language = "eql"
index = ["logs-*"]
from = "now-9m"
risk_score = 47
severity = "medium"
description = "differential test"
query = '''
{query}
'''
"""


def check_binary(binary: Path) -> None:
    """Raise SeqwatchMissing with a clear message unless `binary` is an executable file."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise SeqwatchMissing(
            f"seqwatch binary not found at {binary}. Build it first (`cargo build` in the repository "
            f"root puts it at target/debug/seqwatch) or pass --seqwatch PATH."
        )


def _parse_line(line: str, number: int):
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise SeqwatchFailed(f"replay output line {number} is not JSON ({error}): {line[:200]}") from None
    if not isinstance(value, dict):
        raise SeqwatchFailed(f"replay output line {number} is not a JSON object: {line[:200]}")
    return value


def _ref(value, where: str) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("_index"), str) or not isinstance(value.get("_id"), str):
        raise SeqwatchFailed(f"{where}: expected {{\"_index\": str, \"_id\": str}}, got {json.dumps(value)[:200]}")
    return {"_index": value["_index"], "_id": value["_id"]}


def parse_output(stdout: str, is_sequence: bool) -> list[dict]:
    """Parse replay output into the same shape `pyengine.run_python` returns."""
    results = []
    for number, line in enumerate(stdout.splitlines(), 1):
        if not line.strip():
            continue
        value = _parse_line(line, number)
        if is_sequence:
            if not isinstance(value.get("join_keys"), list) or not isinstance(value.get("events"), list):
                raise SeqwatchFailed(f"replay output line {number}: expected join_keys and events arrays: {line[:200]}")
            results.append({
                "join_keys": value["join_keys"],
                "events": [_ref(event, f"replay output line {number}") for event in value["events"]],
            })
        else:
            results.append(_ref(value, f"replay output line {number}"))
    return results


def run_replay(binary: Path, events_path: Path, rule_path: Path, is_sequence: bool, timeout: float = 120) -> list[dict]:
    """Run `seqwatch replay` and return its parsed results; SeqwatchFailed on any failure."""
    check_binary(binary)
    command = [str(binary), "replay", str(events_path), "--rule", str(rule_path), "--max-alerts", str(MAX_ALERTS)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SeqwatchFailed(f"`{' '.join(command)}` did not finish within {timeout} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()
        raise SeqwatchFailed(f"`{' '.join(command)}` exited with {done.returncode}: {' | '.join(detail[:5])}")
    return parse_output(done.stdout, is_sequence)


def replay_hits(binary: Path, work_dir: Path, hits: list[dict], query: str, name: str, is_sequence: bool) -> list[dict]:
    """Write `hits` and the rule for `query` under `work_dir`, then run replay on them."""
    work_dir.mkdir(parents=True, exist_ok=True)
    events_path = work_dir / "events.ndjson"
    rule_path = work_dir / "rule.toml"
    write_ndjson(hits, events_path)
    rule_path.write_text(rule_toml(query, name), encoding="utf-8")
    return run_replay(binary, events_path, rule_path, is_sequence)
