"""The "known differences" set: tiny streams on which the Python engine and Elasticsearch differ.

Each case pins one difference documented in docs/eql-differences.md (ids D1, D2, ...): the
result the Python engine gives (checked by running it), the result Elasticsearch gives
(written by hand from Elasticsearch's source, cited in `sources`; checked against seqwatch
when the binary is available), and the assertion that the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gen import BASE_EPOCH_MS, iso_ms, set_path

_INDEX = "logs-endpoint.events.process-default"


def hit(doc_id: str, offset_ms: int, **fields) -> dict:
    """A process hit at BASE + offset_ms; keyword arguments are dotted paths with `__` for `.`.

    `event.category` defaults to `["process"]`; pass `None` as a value to leave a field out.
    """
    source: dict = {"@timestamp": iso_ms(BASE_EPOCH_MS + offset_ms)}
    fields.setdefault("event__category", ["process"])
    for name, value in fields.items():
        if value is not None:
            set_path(source, name.replace("__", "."), value)
    return {"_index": _INDEX, "_id": doc_id, "_source": source}


def ref(doc_id: str) -> dict:
    """The `{"_index", "_id"}` of a hit made by `hit`."""
    return {"_index": _INDEX, "_id": doc_id}


def seq(join_keys: list, *doc_ids: str) -> dict:
    """A sequence result."""
    return {"join_keys": join_keys, "events": [ref(doc_id) for doc_id in doc_ids]}


@dataclass(frozen=True)
class KnownDifference:
    """One documented difference, demonstrated on a tiny stream."""

    #: id in docs/eql-differences.md
    id: str
    #: short name, also the rule name given to seqwatch
    name: str
    #: the query (Elasticsearch's EQL; the Python engine runs the same text)
    query: str
    hits: list = field(default_factory=list)
    #: the Python engine's case switch for this run (True is its default configuration)
    python_case_insensitive: bool = True
    expected_python: list = field(default_factory=list)
    expected_es: list = field(default_factory=list)
    #: where the two behaviours come from
    sources: str = ""

    @property
    def is_sequence(self) -> bool:
        """True for sequence queries."""
        return self.query.lstrip().startswith("sequence")


_NODE_SH = '[process where process.name == "node"] [process where process.name == "sh"]'

KNOWN: tuple[KnownDifference, ...] = (
    KnownDifference(
        "D1", "case_folding_equals", 'process where process.name == "node"',
        [hit("a", 0, process__name="NODE"), hit("b", 1, process__name="node")],
        expected_python=[ref("a"), ref("b")], expected_es=[ref("b")],
        sources="eql/engine.py PythonEngine._convert_comparison (lowercase(...)) + eql/utils.py "
                "CASE_INSENSITIVE = True; ES eql-syntax.md '==' case-sensitive, planner/QueryTranslator.java term query",
    ),
    KnownDifference(
        "D2", "case_folding_join_keys", f"sequence by process.entity_id {_NODE_SH}",
        [hit("a", 0, process__name="node", process__entity_id="AB12"),
         hit("b", 1, process__name="sh", process__entity_id="ab12")],
        expected_python=[seq(["AB12"], "a", "b")], expected_es=[],
        sources="eql/engine.py PythonEngine._convert_key(insensitive=True) -> _remove_case; "
                "ES sequence/SequenceKey.java (Arrays.deepEquals, exact)",
    ),
    KnownDifference(
        "D3", "null_join_keys", f"sequence by host.id {_NODE_SH}",
        [hit("a", 0, process__name="node"), hit("b", 1, process__name="sh")],
        python_case_insensitive=False,
        expected_python=[seq([None], "a", "b")], expected_es=[],
        sources="eql/engine.py _convert_sequence_term (a missing key is None, a valid dict key); "
                "ES optimizer/Optimizer.java AddMandatoryJoinKeyFilter (IsNotNull on every non-optional key)",
    ),
    KnownDifference(
        "D4", "multi_valued_join_keys", f"sequence by host.id {_NODE_SH}",
        [hit("a", 0, process__name="node", host__id=["h1", "h2"]),
         hit("b", 1, process__name="sh", host__id="h2")],
        python_case_insensitive=False,
        expected_python=[], expected_es=[seq(["h2"], "a", "b")],
        sources="eql/engine.py _remove_case (a list key becomes one tuple); "
                "ES sequence/TumblingWindow.java wrapValues.extractJoinKeys (cartesian product), PR #89965",
    ),
    KnownDifference(
        "D5", "array_field_equals", 'process where process.args == "install"',
        [hit("a", 0, process__args=["npm", "install"]), hit("b", 1, process__args="install")],
        python_case_insensitive=False,
        # the adapter hands array fields to the Python engine as lists (pyengine.python_view), so
        # neither event matches there
        expected_python=[], expected_es=[ref("a"), ref("b")],
        sources="eql/engine.py check_types (list vs str -> None); ES term query matches any value of a "
                "multi-valued field (ql planner/ExpressionTranslators.java BinaryComparisons -> TermQuery)",
    ),
    KnownDifference(
        "D6", "wildcard_question_mark", 'process where process.name like "no?e"',
        [hit("a", 0, process__name="node"), hit("b", 1, process__name="no?e")],
        python_case_insensitive=False,
        expected_python=[ref("b")], expected_es=[ref("a"), ref("b")],
        sources="eql/functions.py Wildcard.to_regex (only '*' is special); ES eql-syntax.md like: '?' "
                "matches exactly one character (WildcardQuery)",
    ),
    KnownDifference(
        "D7", "regex_end_anchor", 'process where process.name regex "no"',
        [hit("a", 0, process__name="node"), hit("b", 1, process__name="no")],
        python_case_insensitive=False,
        expected_python=[ref("a"), ref("b")], expected_es=[ref("b")],
        sources="eql/functions.py Match.get_callback (re.match anchors the start only); ES RegexQuery "
                "(Lucene regexp matches the whole term)",
    ),
    KnownDifference(
        "D8a", "like_follows_global_case", 'process where process.name like "NODE"',
        [hit("a", 0, process__name="node")],
        python_case_insensitive=True,
        expected_python=[ref("a")], expected_es=[],
        sources="eql/parser.py string_predicate (like and like~ both become wildcard()); eql/functions.py "
                "regex_flags() reads the global switch; ES: like is case-sensitive, like~ is not",
    ),
    KnownDifference(
        "D8b", "colon_follows_global_case", 'process where process.name : "NODE"',
        [hit("a", 0, process__name="node")],
        python_case_insensitive=False,
        expected_python=[], expected_es=[ref("a")],
        sources="eql/parser.py string_predicate (':' becomes wildcard()); ES optimizer ReplaceWildcards / "
                "eql-syntax.md (':' is always case-insensitive)",
    ),
    KnownDifference(
        "D9", "until_event_is_also_first_stage",
        'sequence by process.entity_id [process where process.name == "node"] '
        '[process where process.name == "sh"] until [process where event.action == "exec"]',
        [hit("z", 0, process__name="node", process__entity_id="other", event__action="fork"),
         hit("a", 1, process__name="node", process__entity_id="e1", event__action="exec"),
         hit("b", 2, process__name="sh", process__entity_id="e1", event__action="fork")],
        python_case_insensitive=False,
        expected_python=[seq(["e1"], "a", "b")], expected_es=[],
        sources="eql/engine.py _convert_sequence (the until callback runs before the stage callbacks, so "
                "'a' only clears what was pending before it); ES sequence/SequenceMatcher.java match(): "
                "until.before(hit) then Ordinal.between(sequence.ordinal(), hit) is inclusive, so the marker "
                "on 'a' rejects [a, b]. ('z' makes 'a' not the window's first stage-0 hit: TumblingWindow "
                "starts the until query strictly after that hit.)",
    ),
    KnownDifference(
        "D10", "until_event_is_also_last_stage",
        'sequence by process.entity_id [process where process.name == "node"] '
        '[process where process.name == "sh"] until [process where event.action == "end"]',
        [hit("a", 0, process__name="node", process__entity_id="e1", event__action="exec"),
         hit("b", 1, process__name="sh", process__entity_id="e1", event__action="end")],
        python_case_insensitive=False,
        expected_python=[], expected_es=[seq(["e1"], "a", "b")],
        sources="eql/engine.py _convert_sequence (until callback first: pops the pending sequence); ES "
                "SequenceMatcher.java match(): UntilGroup.before(ordinal) only sees markers strictly before the hit",
    ),
    KnownDifference(
        "D11", "subsecond_maxspan", f"sequence by host.id with maxspan=1500ms {_NODE_SH}",
        [hit("a", 0, process__name="node", host__id="h1"), hit("b", 1200, process__name="sh", host__id="h1")],
        python_case_insensitive=False,
        expected_python=[], expected_es=[seq(["h1"], "a", "b")],
        sources="eql/walkers.py convert_time_range (as_milliseconds() // 1000: whole seconds, 1500ms -> 1 s); "
                "ES SequenceMatcher.exceedsMaxSpan in nanoseconds",
    ),
    KnownDifference(
        "D12", "not_equals_on_missing_field", 'process where process.name != "node"',
        [hit("a", 0, process__name="sh"), hit("b", 1)],
        python_case_insensitive=False,
        expected_python=[ref("a")], expected_es=[ref("a"), ref("b")],
        sources="eql/engine.py check_types (None -> null, not true); ES ql planner/ExpressionTranslators.java "
                "BinaryComparisons: NotEquals -> NotQuery(TermQuery), a bool must_not that a document without "
                "the field satisfies",
    ),
)
