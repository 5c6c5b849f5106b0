"""Runs a query over a stream of hits with the Python `eql` engine (`eql.PythonEngine`).

This module owns the adapter between Elasticsearch hits and the Python engine's `Event`s and
the engine's configuration: the Elasticsearch dialect (`eql.parser.elasticsearch_syntax`, with
`with runs` allowed), milliseconds as the time unit (`time_unit` = ticks per second = 1000),
and the engine's global case switch `eql.utils.CASE_INSENSITIVE`, which it sets for the run
and restores afterwards. Results come out in seqwatch replay's shape so they can be compared.
"""

from __future__ import annotations

import contextlib

import eql.utils
from eql.parser import ParserConfig, elasticsearch_syntax

import eql

from .gen import ARRAY_FIELDS, get_path, hit_time_ms, nest_dotted

#: Key under which the adapter stores the hit's `_index`/`_id` inside the event data.
REF_KEY = "_eqldiff_ref"


@contextlib.contextmanager
def case_mode(case_insensitive: bool):
    """Set the Python engine's global case switch for the duration of a run.

    The engine reads `eql.utils.CASE_INSENSITIVE` both when a query is compiled (regex flags of
    wildcards, folded `in` sets) and while events stream (comparisons, join keys), so it must
    stay set for both.
    """
    previous = eql.utils.CASE_INSENSITIVE
    eql.utils.CASE_INSENSITIVE = case_insensitive
    try:
        yield
    finally:
        eql.utils.CASE_INSENSITIVE = previous


def parse(query_text: str):
    """Parse EQL in the Elasticsearch dialect, `with runs` allowed."""
    with elasticsearch_syntax, ParserConfig(allow_runs=True):
        return eql.parse_query(query_text)


def python_view(source: dict) -> dict:
    """The `_source` as the Python engine should see it.

    Elasticsearch treats `"x"` and `["x"]` alike, and a dotted key like a nested object; the
    Python engine does neither. So dotted keys are expanded, and the ECS array fields are
    always given to it as lists (the Python queries test them with `arrayContains`
    or `arraySearch`, see `queries`).
    """
    view = nest_dotted(source)
    for path in ARRAY_FIELDS:
        value = get_path(view, path)
        if value is not None and not isinstance(value, list):
            parts = path.split(".")
            holder = view
            for part in parts[:-1]:
                holder = holder[part]
            holder[parts[-1]] = [value]
    return view


def to_event(hit: dict) -> eql.Event:
    """One hit as a Python engine event: type = its (single) event category, time in ms."""
    view = python_view(hit["_source"])
    category = get_path(view, "event.category")
    event_type = category[0] if isinstance(category, list) and category else "unknown"
    view[REF_KEY] = {"_index": hit["_index"], "_id": hit["_id"]}
    return eql.Event(event_type, hit_time_ms(hit), view)


def _field_path(node) -> str:
    """Dotted path of an `eql.ast.Field` (join keys are plain fields in the ES dialect)."""
    return ".".join([node.base] + [str(part) for part in node.path])


def _join_key_fields(query) -> list[str]:
    """The first stage's key fields (sequence keys first, then the stage's own)."""
    base = query.first
    if isinstance(base, eql.ast.Sequence):
        return [_field_path(value) for value in base.queries[0].join_values]
    return []


def run_python(query_text, hits: list[dict], case_insensitive: bool) -> list[dict]:
    """Run `query_text` (EQL text, or an already parsed `eql.ast.PipedQuery`) over `hits` (in
    order) and return results in seqwatch replay's shape.

    For a sequence: `{"join_keys": [...], "events": [{"_index", "_id"}, ...]}` per sequence,
    in the order the engine completes them (ascending by last event). For an event query:
    `{"_index", "_id"}` per matching event, in stream order.
    """
    with case_mode(case_insensitive):
        query = parse(query_text) if isinstance(query_text, str) else query_text
        key_fields = _join_key_fields(query)
        is_sequence = isinstance(query.first, eql.ast.Sequence)
        outputs: list = []
        engine = eql.PythonEngine({"time_unit": 1000, "flatten": False})
        engine.add_output_hook(outputs.append)
        engine.add_query(query)
        engine.stream_events([to_event(hit) for hit in hits])

    results = []
    for output in outputs:
        events = output.events
        if is_sequence:
            first = events[0].data
            results.append({
                "join_keys": [get_path(first, path) for path in key_fields],
                "events": [dict(event.data[REF_KEY]) for event in events],
            })
        else:
            results.append(dict(events[0].data[REF_KEY]))
    return results
