"""The "must agree" query set: each query in Elasticsearch's EQL and its Python-engine twin.

`es` is what seqwatch runs (what Elasticsearch would run). `py` is the same query written so
that the Python engine computes what Elasticsearch computes on the streams `gen` makes; it
differs from `es` only by the neutralising rewrites listed in docs/eql-differences.md:

- an ECS array field compared with `==`/`!=` becomes `arrayContains(...)` (Elasticsearch's
  term query matches any element; the Python engine compares the whole list, difference D5);
  with `:`/`like` it becomes `arraySearch(field, a, a : ...)`;
- `regex` gets a trailing `$` (Elasticsearch anchors both ends; Python's `re.match` only the
  start, difference D7);
- case: each query uses only case-sensitive operators (`==`, `in`, `like`, `regex`, functions
  without `~`) and runs with the Python engine's case switch off, or only case-insensitive ones
  (`:`, `in~`, `like~`, `fn~`) and runs with it on (difference D1/D8: the switch is global).
"""

from __future__ import annotations

from dataclasses import dataclass

from .gen import StreamOptions


@dataclass(frozen=True)
class QueryCase:
    """One query of the "must agree" set."""

    #: short unique name; also the rule name in the TOML given to seqwatch
    name: str
    #: the query as Elasticsearch (and seqwatch) runs it
    es: str
    #: the same query for the Python engine (see the module docs for the allowed rewrites)
    py: str
    #: run the Python engine with its global case switch on (for `:`, `in~`, `like~`, `fn~`)
    case_insensitive: bool = False
    #: may the stream vary the case of non-key strings
    vary_case: bool = True

    def stream_options(self, events: int) -> StreamOptions:
        """Stream options under which this query's semantics coincide in both engines."""
        return StreamOptions(events=events, vary_case=self.vary_case, ties=True)


_S0 = ('process where host.os.type == "linux" and event.type == "start" and '
       'event.action in ("exec", "ProcessRollup2") and process.name == "node" and process.args == "install"')
_S0_PY = ('process where host.os.type == "linux" and arrayContains(event.type, "start") and '
          'event.action in ("exec", "ProcessRollup2") and process.name == "node" and '
          'arrayContains(process.args, "install")')
_S1 = ('process where host.os.type == "linux" and event.type == "start" and '
       'event.action in ("exec", "ProcessRollup2") and process.parent.name == "node"')
_S1_PY = ('process where host.os.type == "linux" and arrayContains(event.type, "start") and '
          'event.action in ("exec", "ProcessRollup2") and process.parent.name == "node"')

#: The production rule ("Node.js Pre or Post-Install Script Execution", v2), verbatim.
PRODUCTION_RULE = f"""sequence by host.id with maxspan=10s
  [{_S0}] by process.entity_id
  [{_S1}] by process.parent.entity_id"""


def _seq(header: str, stages: list[str], until: str | None = None) -> str:
    body = "\n".join(f"  {stage}" for stage in stages)
    text = f"{header}\n{body}"
    if until:
        text += f"\n until {until}"
    return text


def _both(name: str, header: str, stages: list[tuple[str, str, str]], until=None, **flags) -> QueryCase:
    """A sequence case from (es filter, py filter, by-clause) stages."""
    es = _seq(header, [f"[{es}]{by}" for es, _, by in stages], until[0] if until else None)
    py = _seq(header, [f"[{py}]{by}" for _, py, by in stages], until[1] if until else None)
    return QueryCase(name, es, py, **flags)


_BY_E = " by process.entity_id"
_BY_P = " by process.parent.entity_id"

MUST_AGREE: tuple[QueryCase, ...] = (
    QueryCase("production_rule", PRODUCTION_RULE, _seq(
        "sequence by host.id with maxspan=10s", [f"[{_S0_PY}]{_BY_E}", f"[{_S1_PY}]{_BY_P}"])),
    _both("rule_no_maxspan", "sequence by host.id", [(_S0, _S0_PY, _BY_E), (_S1, _S1_PY, _BY_P)]),
    _both("rule_maxspan_2000ms", "sequence by host.id with maxspan=2000ms",
          [(_S0, _S0_PY, _BY_E), (_S1, _S1_PY, _BY_P)]),
    _both("rule_until_end", "sequence by host.id with maxspan=10s",
          [(_S0, _S0_PY, _BY_E), (_S1, _S1_PY, _BY_P)],
          until=('[process where event.type == "end"] by process.entity_id',
                 '[process where arrayContains(event.type, "end")] by process.entity_id')),
    _both("three_stages", "sequence by host.id with maxspan=10s", [
        (_S0, _S0_PY, _BY_E),
        (_S1, _S1_PY, _BY_P),
        ('process where event.type == "start" and process.parent.name == "node" and process.name == "sh"',
         ('process where arrayContains(event.type, "start") and process.parent.name == "node" and '
          'process.name == "sh"'), _BY_P),
    ]),
    _both("stage_keys_only", "sequence with maxspan=10s",
          [(_S0, _S0_PY, " by host.id, process.entity_id"), (_S1, _S1_PY, " by host.id, process.parent.entity_id")]),
    _both("entity_keys_across_hosts", "sequence with maxspan=10s", [(_S0, _S0_PY, _BY_E), (_S1, _S1_PY, _BY_P)]),
    _both("sequence_keys_only", "sequence by host.id with maxspan=3s", [
        ('process where process.name == "node"', 'process where process.name == "node"', ""),
        ('process where process.name == "sh"', 'process where process.name == "sh"', ""),
    ]),
    _both("no_keys", "sequence with maxspan=1s", [
        ('process where process.name == "curl"', 'process where process.name == "curl"', ""),
        ('process where process.parent.name == "node"', 'process where process.parent.name == "node"', ""),
    ]),
    _both("runs_2", "sequence by host.id with maxspan=10s", [
        (_S0, _S0_PY, _BY_E),
        ('process where process.parent.name == "node"', 'process where process.parent.name == "node"',
         _BY_P + " with runs=2"),
    ]),
    _both("until_by_parent", "sequence by host.id with maxspan=10s",
          [(_S0, _S0_PY, _BY_E), (_S1, _S1_PY, _BY_P)],
          until=('[process where event.action == "end"] by process.parent.entity_id',
                 '[process where event.action == "end"] by process.parent.entity_id')),
    _both("same_filter_twice", "sequence by host.id with maxspan=2s", [
        ('process where process.name == "node"', 'process where process.name == "node"', ""),
        ('process where process.name == "node"', 'process where process.name == "node"', ""),
    ]),
    _both("runs_3_same_key", "sequence by host.id with maxspan=3s", [
        ('process where process.parent.name == "node"', 'process where process.parent.name == "node"',
         " with runs=3"),
    ]),
    _both("insensitive_sequence", "sequence by host.id with maxspan=10s", [
        ('process where process.name : "NODE" and process.args : "inst*"',
         'process where process.name : "NODE" and arraySearch(process.args, a, a : "inst*")', _BY_E),
        ('process where process.parent.name : "Node" and event.action in~ ("EXEC", "processrollup2")',
         'process where process.parent.name : "Node" and event.action in~ ("EXEC", "processrollup2")', _BY_P),
    ], case_insensitive=True),
    # -- event queries --------------------------------------------------------------------
    QueryCase("colon_equals", 'process where process.name : "node"', 'process where process.name : "node"',
              case_insensitive=True),
    QueryCase("colon_wildcards", 'process where process.name : ("no*", "*sh")',
              'process where process.name : ("no*", "*sh")', case_insensitive=True),
    QueryCase("like_insensitive", 'process where process.parent.name like~ "NO*"',
              'process where process.parent.name like~ "NO*"', case_insensitive=True),
    QueryCase("like_sensitive", 'process where process.name like "no*"', 'process where process.name like "no*"'),
    QueryCase("in_insensitive", 'process where event.action in~ ("EXEC", "processrollup2")',
              'process where event.action in~ ("EXEC", "processrollup2")', case_insensitive=True),
    QueryCase("in_and_not", 'process where process.name in ("node", "npm") and not event.action == "fork"',
              'process where process.name in ("node", "npm") and not event.action == "fork"'),
    QueryCase("not_in", 'process where process.name not in ("node", "bash", "sh")',
              'process where process.name not in ("node", "bash", "sh")'),
    QueryCase("starts_with", 'process where startsWith(process.name, "no")',
              'process where startsWith(process.name, "no")'),
    QueryCase("ends_with_insensitive", 'process where endsWith~(process.name, "SH")',
              'process where endsWith~(process.name, "SH")', case_insensitive=True),
    QueryCase("string_contains", 'process where stringContains(process.executable, "bin/n")',
              'process where stringContains(process.executable, "bin/n")'),
    QueryCase("length_arith", 'process where length(process.name) + 1 == 5',
              'process where length(process.name) + 1 == 5'),
    QueryCase("args_equals", 'process where process.args == "install" and process.name == "node"',
              'process where arrayContains(process.args, "install") and process.name == "node"'),
    QueryCase("args_colon_wildcard", 'process where process.args : "INST*"',
              'process where arraySearch(process.args, a, a : "INST*")', case_insensitive=True),
    QueryCase("type_not_equals", 'process where event.type != "end"',
              'process where not arrayContains(event.type, "end")'),
    QueryCase("any_category", 'any where host.os.type == "linux" and event.action == "exec"',
              'any where host.os.type == "linux" and event.action == "exec"'),
    QueryCase("file_category", 'file where true', 'file where true'),
    QueryCase("regex_anchored", 'process where process.name regex "no.e"',
              'process where process.name regex "no.e$"'),
    QueryCase("or_fields", 'process where process.name == "node" or process.parent.name == "node"',
              'process where process.name == "node" or process.parent.name == "node"'),
    QueryCase("optional_missing_is_null", 'process where ?process.working_directory == null',
              'process where ?process.working_directory == null'),
    QueryCase("null_checks", 'process where process.parent.name == null or process.working_directory != null',
              'process where process.parent.name == null or process.working_directory != null'),
    QueryCase("number_range", 'process where process.pid >= 1000 and process.pid < 5000',
              'process where process.pid >= 1000 and process.pid < 5000'),
    _both("functions_sequence", "sequence by host.id with maxspan=5s", [
        ('process where startsWith(process.name, "no") and process.pid > 100',
         'process where startsWith(process.name, "no") and process.pid > 100', _BY_E),
        ('process where endsWith(process.parent.name, "de")',
         'process where endsWith(process.parent.name, "de")', _BY_P),
    ]),
)


def by_name(names: list[str] | None) -> list[QueryCase]:
    """The cases whose names are given (all of them for None); unknown names are an error."""
    if not names:
        return list(MUST_AGREE)
    known = {case.name: case for case in MUST_AGREE}
    missing = [name for name in names if name not in known]
    if missing:
        raise KeyError(f"unknown query case(s): {', '.join(missing)}; known: {', '.join(known)}")
    return [known[name] for name in names]
