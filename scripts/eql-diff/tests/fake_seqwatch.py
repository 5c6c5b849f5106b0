#!/usr/bin/env python3
"""A stand-in for `seqwatch replay`, used to test the harness while the real binary is absent.

It speaks the replay contract (arguments, TOML rule, NDJSON in, JSON lines out) and computes
results with an independent model of Elasticsearch's sequence state machine, written from
`SequenceMatcher.java`, `OrdinalGroup.java` (trimBefore), `Ordinal.java` (between) and
`TumblingWindow.java` (cartesian join keys): per key, a stage-n event advances the latest
pending stage-(n-1) sequence strictly before it and discards older ones; maxspan is checked
afterwards, inclusive, from the first event; the nearest until marker strictly before the
event rejects the sequence if it lies between the sequence's last event and the event
(inclusive); events without a value for a key are dropped; multi-valued keys expand to the
cartesian product. Stage filters are evaluated with the Python engine on the case's `py`
twin from `eqldiff.queries` (found by the rule name), so only the must-agree cases are
supported; for a known-difference case it answers the documented Elasticsearch result.

`FAKE_SEQWATCH_BUG` injects a bug for the harness's own tests: `exclusive-maxspan` (a span
equal to maxspan is rejected), `fail` (exits 1 like an unbuilt replay command).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eqldiff import known, pyengine, queries
from eqldiff.gen import get_path, hit_time_ms, nest_dotted
from eqldiff.seqwatch import read_ndjson


def _key_values(source: dict, fields: list[str]) -> list[tuple]:
    """All key tuples of an event (cartesian product); none if a key has no value."""
    source = nest_dotted(source)
    per_field = []
    for path in fields:
        value = get_path(source, path)
        values = value if isinstance(value, list) else ([] if value is None else [value])
        values = [v for v in values if v is not None]
        if not values:
            return []
        per_field.append(values)
    return [tuple(combo) for combo in itertools.product(*per_field)]


def _members(event_query, hits: list[dict], case_insensitive: bool) -> set[str]:
    """Ids of the hits matching one stage's filter (a parsed `eql.ast.EventQuery`)."""
    import eql

    piped = eql.ast.PipedQuery(event_query, [])
    return {r["_id"] for r in pyengine.run_python(piped, hits, case_insensitive)}


def _sequence_results(case: queries.QueryCase, hits: list[dict], bug: str) -> list[dict]:
    import eql

    query = pyengine.parse(case.py).first
    stages = query.queries
    paths = [[pyengine._field_path(v) for v in stage.join_values] for stage in stages]
    members = [_members(stage.query, hits, case.case_insensitive) for stage in stages]
    until_members, until_paths = set(), []
    if query.close is not None:
        until_members = _members(query.close.query, hits, case.case_insensitive)
        until_paths = [pyengine._field_path(v) for v in query.close.join_values]
    maxspan = query.max_span.as_milliseconds() if isinstance(query.max_span, eql.ast.TimeRange) else None

    pending = [defaultdict(list) for _ in stages]  # stage -> key -> [sequence], oldest first
    markers = defaultdict(list)  # key -> [ordinal]
    completed = []
    for position, hit in enumerate(hits):
        ordinal = (hit_time_ms(hit), position)
        ref = {"_index": hit["_index"], "_id": hit["_id"]}
        if hit["_id"] in until_members:
            for key in _key_values(hit["_source"], until_paths):
                markers[key].append(ordinal)
        for stage in range(len(stages)):
            if hit["_id"] not in members[stage]:
                continue
            for key in _key_values(hit["_source"], paths[stage]):
                if stage == 0:
                    sequence = {"start": ordinal[0], "last": ordinal, "events": [ref]}
                    if len(stages) == 1:
                        completed.append((ordinal, key, sequence["events"]))
                    else:
                        pending[0][key].append(sequence)
                    continue
                group = pending[stage - 1].get(key, [])
                before = [i for i, s in enumerate(group) if s["last"] < ordinal]
                if not before:
                    continue
                chosen = group[before[-1]]
                del group[: before[-1] + 1]
                span = ordinal[0] - chosen["start"]
                if maxspan and (span >= maxspan if bug == "exclusive-maxspan" else span > maxspan):
                    continue
                earlier = [m for m in markers.get(key, []) if m < ordinal]
                if earlier and chosen["last"] <= max(earlier) <= ordinal:
                    continue
                advanced = {"start": chosen["start"], "last": ordinal, "events": chosen["events"] + [ref]}
                if stage == len(stages) - 1:
                    completed.append((ordinal, key, advanced["events"]))
                else:
                    pending[stage][key].append(advanced)
    completed.sort(key=lambda item: item[0])
    results, seen_last = [], set()
    for last, key, events in completed:
        if last in seen_last:  # TreeSet<Sequence> ordered by the last ordinal keeps one
            continue
        seen_last.add(last)
        results.append({"join_keys": list(key), "events": events})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="fake_seqwatch")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay")
    replay.add_argument("events")
    replay.add_argument("--rule", required=True)
    replay.add_argument("--max-alerts", type=int, default=100)
    args = parser.parse_args()
    bug = os.environ.get("FAKE_SEQWATCH_BUG", "")
    if bug == "fail":
        print("Error: replay: not built yet", file=sys.stderr)
        return 1
    rule = tomllib.loads(Path(args.rule).read_text(encoding="utf-8"))["rule"]
    hits = read_ndjson(Path(args.events))
    cases = {case.name: case for case in queries.MUST_AGREE}
    differences = {case.name: case for case in known.KNOWN}
    name = rule["name"]
    if name == "preflight":  # run.py's check that replay works at all, on an empty stream
        return 0
    if name in differences:
        results = differences[name].expected_es
    elif name in cases:
        case = cases[name]
        if case.es.strip() != rule["query"].strip():
            print(f"fake seqwatch: query of {name} differs from the must-agree case", file=sys.stderr)
            return 3
        if case.es.lstrip().startswith("sequence"):
            results = _sequence_results(case, hits, bug)
        else:
            results = pyengine.run_python(case.py, hits, case.case_insensitive)
    else:
        print(f"fake seqwatch: unknown rule name {name!r}", file=sys.stderr)
        return 3
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
