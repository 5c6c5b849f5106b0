"""Tests of the differential harness itself: generator, Python engine adapter, comparison,
shrinking, the replay contract, the known differences, and the command end to end (with
`fake_seqwatch.py` standing in for the binary).

Run from the repository root:  python3 -m unittest discover -s scripts/eql-diff/tests -v
"""

from __future__ import annotations

import io
import itertools
import json
import os
import sys
import tempfile
import tomllib
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    import eql  # noqa: F401  (the engine under comparison; pinned in ../requirements.txt)
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    print("skipped: the Python eql package is not installed (pip install -r scripts/eql-diff/requirements.txt)")
    raise unittest.SkipTest("the Python eql package is not installed") from None

sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import fake_seqwatch
import run
from eqldiff import compare, gen, known, pyengine, queries, seqwatch
from eqldiff.known import hit, ref, seq

FAKE = HERE / "fake_seqwatch.py"
CASES = {case.name: case for case in queries.MUST_AGREE}


def _all_keys(obj):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from _all_keys(value)


def key_values(hits, path):
    return [gen.get_path(gen.nest_dotted(h["_source"]), path) for h in hits]


class GeneratorTest(unittest.TestCase):
    def test_same_seed_same_stream_and_different_seed_different_stream(self):
        self.assertEqual(gen.generate_stream(5), gen.generate_stream(5))
        self.assertNotEqual(gen.generate_stream(5), gen.generate_stream(6))

    def test_streams_are_ordered_with_unique_ids_and_never_a_null_or_multi_valued_key(self):
        for seed in range(30):
            hits = gen.generate_stream(seed)
            times = [gen.hit_time_ms(h) for h in hits]
            self.assertEqual(times, sorted(times), f"seed {seed}")
            self.assertEqual(len({h["_id"] for h in hits}), len(hits))
            for path in ("host.id", "process.entity_id", "process.parent.entity_id"):
                for value in key_values(hits, path):
                    self.assertIsInstance(value, str, f"seed {seed} {path}")
                    self.assertEqual(value, value.lower(), "join keys never vary in case")

    def test_ties_are_frequent_by_default_and_absent_when_disabled(self):
        def ties(hits):
            times = [gen.hit_time_ms(h) for h in hits]
            return sum(1 for a, b in itertools.pairwise(times) if a == b)

        self.assertGreater(sum(ties(gen.generate_stream(s)) for s in range(10)), 50)
        no_ties = gen.StreamOptions(ties=False)
        self.assertEqual(sum(ties(gen.generate_stream(s, no_ties)) for s in range(10)), 0)

    def test_case_varies_only_when_allowed(self):
        def mixed_case_names(options):
            return {n for s in range(20) for n in key_values(gen.generate_stream(s, options), "process.name")
                    if n != n.lower()}

        self.assertTrue(mixed_case_names(gen.StreamOptions(vary_case=True)))
        self.assertFalse(mixed_case_names(gen.StreamOptions(vary_case=False)))

    def test_streams_exercise_the_maxspan_boundary_until_and_overwrite(self):
        """The generated streams are not vacuous for the rule: some results change with maxspan
        and with until, and some children land exactly 10 s after their parent."""
        rule, no_maxspan, until = CASES["production_rule"], CASES["rule_no_maxspan"], CASES["rule_until_end"]
        maxspan_matters = until_matters = exact_boundary = 0
        for s in range(40):
            hits = gen.generate_stream(s, rule.stream_options(80))
            base = pyengine.run_python(rule.py, hits, False)
            maxspan_matters += base != pyengine.run_python(no_maxspan.py, hits, False)
            until_matters += base != pyengine.run_python(until.py, hits, False)
            times = {h["_id"]: gen.hit_time_ms(h) for h in hits}
            exact_boundary += any(times[r["events"][1]["_id"]] - times[r["events"][0]["_id"]] == 10000 for r in base)
        self.assertGreater(maxspan_matters, 0)
        self.assertGreater(until_matters, 0)
        self.assertGreater(exact_boundary, 0)

    def test_dotted_keys_and_missing_optional_fields_occur_and_nest_back(self):
        dotted = missing = 0
        for s in range(20):
            for h in gen.generate_stream(s):
                text = json.dumps(h["_source"])
                dotted += '.' in "".join(k for k in _all_keys(h["_source"]))
                missing += gen.get_path(gen.nest_dotted(h["_source"]), "process.parent.name") is None
                self.assertIsInstance(gen.get_path(gen.nest_dotted(h["_source"]), "process.entity_id"), str, text)
        self.assertGreater(dotted, 0)
        self.assertGreater(missing, 0)
        self.assertEqual(gen.nest_dotted({"process": {"parent.name": "node", "parent": {"pid": 1}}, "host.id": "h"}),
                         {"process": {"parent": {"name": "node", "pid": 1}}, "host": {"id": "h"}})

    def test_iso_timestamps_round_trip(self):
        for offset in (0, 1, 999, 10000, 86_400_001):
            self.assertEqual(gen.parse_iso_ms(gen.iso_ms(gen.BASE_EPOCH_MS + offset)), gen.BASE_EPOCH_MS + offset)


def rule_stream(*events):
    """Hits for the production rule: (id, offset_ms, role, entity, parent_entity)."""
    hits = []
    for doc_id, offset, role, entity, parent in events:
        fields = {"host__id": "h1", "host__os__type": "linux", "event__type": ["start"], "event__action": "exec",
                  "process__entity_id": entity, "process__parent__entity_id": parent}
        if role == "parent":
            fields.update(process__name="node", process__args=["node", "/usr/bin/npm", "install"],
                          process__parent__name="bash")
        else:
            fields.update(process__name="sh", process__args=["sh", "-c", "x"], process__parent__name="node")
        hits.append(hit(doc_id, offset, **fields))
    return hits


class PythonEngineTest(unittest.TestCase):
    """The Python engine, configured as the harness configures it, does what Elasticsearch does
    on these streams (the premise of the must-agree set). Elasticsearch facts are from
    x-pack/plugin/eql/src/main/java/org/elasticsearch/xpack/eql/execution/sequence/SequenceMatcher.java
    (match, exceedsMaxSpan) and OrdinalGroup.java (trimBefore)."""

    def run_rule(self, hits):
        case = CASES["production_rule"]
        return pyengine.run_python(case.py, hits, case.case_insensitive)

    def test_maxspan_is_inclusive_exactly_10_s_matches_and_10_001_s_does_not(self):
        # ES exceedsMaxSpan: (now - start) > maxspan rejects, so a span equal to maxspan matches
        hits = rule_stream(("p", 0, "parent", "e1", "x"), ("c", 10000, "child", "c1", "e1"))
        self.assertEqual(self.run_rule(hits), [seq(["h1", "e1"], "p", "c")])
        hits = rule_stream(("p", 0, "parent", "e1", "x"), ("c", 10001, "child", "c1", "e1"))
        self.assertEqual(self.run_rule(hits), [])

    def test_latest_pending_parent_wins(self):
        # ES trimBefore: the latest pending sequence strictly before the hit is advanced
        hits = rule_stream(("p1", 0, "parent", "e1", "x"), ("p2", 5, "parent", "e1", "x"),
                           ("c", 9, "child", "c1", "e1"))
        self.assertEqual(self.run_rule(hits), [seq(["h1", "e1"], "p2", "c")])

    def test_one_sequence_per_parent_even_with_many_children(self):
        # ES: the pending sequence is removed when advanced, so a second child finds nothing
        hits = rule_stream(("p", 0, "parent", "e1", "x"), ("c1", 1, "child", "k1", "e1"),
                           ("c2", 2, "child", "k2", "e1"))
        self.assertEqual(self.run_rule(hits), [seq(["h1", "e1"], "p", "c1")])

    def test_child_before_parent_in_input_order_does_not_match(self):
        # equal timestamps: input order stands for _shard_doc; the child must come strictly after
        hits = rule_stream(("c", 0, "child", "k1", "e1"), ("p", 0, "parent", "e1", "x"))
        self.assertEqual(self.run_rule(hits), [])
        hits = rule_stream(("p", 0, "parent", "e1", "x"), ("c", 0, "child", "k1", "e1"))
        self.assertEqual(self.run_rule(hits), [seq(["h1", "e1"], "p", "c")])

    def test_case_switch_is_restored_after_a_run(self):
        import eql.utils

        before = eql.utils.CASE_INSENSITIVE
        pyengine.run_python('process where process.name == "x"', [], not before)
        self.assertEqual(eql.utils.CASE_INSENSITIVE, before)

    def test_scalar_array_fields_are_given_to_the_engine_as_lists(self):
        view = pyengine.python_view({"process": {"args": "install"}, "event": {"type": ["start"]}})
        self.assertEqual(view["process"]["args"], ["install"])
        self.assertEqual(view["event"]["type"], ["start"])

    def test_every_python_twin_parses(self):
        for case in queries.MUST_AGREE:
            with self.subTest(case=case.name):
                pyengine.parse(case.py)
                pyengine.parse(case.es)  # the ES text is valid EQL for the Python parser too


class EsModelTest(unittest.TestCase):
    """The fake's independent model of Elasticsearch's state machine agrees with the Python
    engine on the must-agree streams (a sanity check of the must-agree premise)."""

    def test_model_and_python_agree_on_the_sequence_queries(self):
        for case in queries.MUST_AGREE:
            if not case.es.startswith("sequence"):
                continue
            for index in range(8):
                hits = gen.generate_stream(run.case_seed(3, case.name, index), case.stream_options(80))
                ours = pyengine.run_python(case.py, hits, case.case_insensitive)
                model = fake_seqwatch._sequence_results(case, hits, "")
                with self.subTest(case=case.name, index=index):
                    self.assertTrue(compare.compare(ours, model).agree, compare.compare(ours, model).describe())


class CompareTest(unittest.TestCase):
    def test_equal_lists_agree(self):
        self.assertTrue(compare.compare([ref("a")], [ref("a")]).agree)
        self.assertEqual(compare.compare([], []).describe(), "")

    def test_missing_and_extra_results_are_reported_per_side(self):
        outcome = compare.compare([ref("a"), ref("b")], [ref("b"), ref("c")])
        self.assertFalse(outcome.agree)
        self.assertEqual(outcome.only_python, [ref("a")])
        self.assertEqual(outcome.only_seqwatch, [ref("c")])
        self.assertIn("only python", outcome.describe())

    def test_duplicates_count(self):
        outcome = compare.compare([ref("a"), ref("a")], [ref("a")])
        self.assertEqual(outcome.only_python, [ref("a")])

    def test_order_alone_is_a_disagreement(self):
        outcome = compare.compare([ref("a"), ref("b")], [ref("b"), ref("a")])
        self.assertFalse(outcome.agree)
        self.assertTrue(outcome.order_differs)
        self.assertFalse(outcome.only_python or outcome.only_seqwatch)

    def test_join_keys_are_compared(self):
        self.assertFalse(compare.compare([seq(["h1"], "a", "b")], [seq(["h2"], "a", "b")]).agree)


class ShrinkTest(unittest.TestCase):
    def test_shrinks_to_the_two_culprits_in_order(self):
        calls = []

        def fails(items):
            calls.append(len(items))
            return 3 in items and 17 in items

        self.assertEqual(compare.shrink(list(range(40)), fails), [3, 17])
        self.assertLess(len(calls), 200)

    def test_result_is_one_minimal(self):
        def fails(items):  # fails while at least three even numbers remain
            return sum(1 for i in items if i % 2 == 0) >= 3

        result = compare.shrink(list(range(30)), fails)
        self.assertTrue(fails(result))
        for i in range(len(result)):
            self.assertFalse(fails(result[:i] + result[i + 1:]))

    def test_never_returns_an_empty_list(self):
        result = compare.shrink([1, 2, 3], lambda items: True)
        self.assertEqual(len(result), 1)
        self.assertIn(result[0], [1, 2, 3])


class ReplayContractTest(unittest.TestCase):
    def test_rule_toml_parses_and_carries_the_query(self):
        text = seqwatch.rule_toml(queries.PRODUCTION_RULE, "production_rule")
        rule = tomllib.loads(text)["rule"]
        self.assertEqual(rule["query"].strip(), queries.PRODUCTION_RULE)
        self.assertEqual((rule["type"], rule["language"], rule["name"]), ("eql", "eql", "production_rule"))

    def test_rule_toml_refuses_triple_quotes(self):
        with self.assertRaises(ValueError):
            seqwatch.rule_toml("process where x == '''", "bad")

    def test_parse_sequences_and_events(self):
        line = json.dumps({"join_keys": ["h1", "e1"], "events": [ref("a"), ref("b")]})
        self.assertEqual(seqwatch.parse_output(line + "\n\n", True), [seq(["h1", "e1"], "a", "b")])
        self.assertEqual(seqwatch.parse_output(json.dumps(ref("a")), False), [ref("a")])

    def test_contract_violations_name_the_line(self):
        for bad, sequence in (("not json", False), ("[1]", False), ('{"_id": "a"}', False),
                              ('{"events": []}', True), ('{"join_keys": [], "events": [{"_id": 1}]}', True)):
            with self.subTest(bad=bad), self.assertRaisesRegex(seqwatch.SeqwatchFailed, "line 1"):
                seqwatch.parse_output(bad, sequence)

    def test_ndjson_round_trip(self):
        hits = gen.generate_stream(2)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.ndjson"
            seqwatch.write_ndjson(hits, path)
            self.assertEqual(seqwatch.read_ndjson(path), hits)

    def test_missing_binary_has_a_clear_message(self):
        with self.assertRaisesRegex(seqwatch.SeqwatchMissing, "cargo build"):
            seqwatch.check_binary(Path("/nonexistent/seqwatch"))


class KnownDifferencesTest(unittest.TestCase):
    """Each documented difference holds for the pinned Python engine (docs/eql-differences.md)."""

    def test_each_difference_holds(self):
        ids = [d.id for d in known.KNOWN]
        self.assertEqual(len(ids), len(set(ids)))
        for difference in known.KNOWN:
            with self.subTest(id=difference.id, name=difference.name):
                ours = pyengine.run_python(difference.query, difference.hits, difference.python_case_insensitive)
                self.assertEqual(ours, difference.expected_python)
                self.assertNotEqual(difference.expected_python, difference.expected_es)
                self.assertTrue(difference.sources)

    def test_documented_in_the_differences_file(self):
        doc = HERE.parent.parent.parent / "docs" / "eql-differences.md"
        text = doc.read_text(encoding="utf-8")
        for difference in known.KNOWN:
            self.assertIn(f"`{difference.name}`", text, f"{difference.id} is not documented")


def run_main(*args, env=None):
    """Run run.main with captured output; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with redirect_stdout(out), redirect_stderr(err):
            status = run.main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return status, out.getvalue(), err.getvalue()


class EndToEndTest(unittest.TestCase):
    def test_missing_binary_exits_2_with_a_clear_message(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, _, err = run_main("--seqwatch", "/nonexistent/seqwatch", "--out", tmp)
        self.assertEqual(status, 2)
        self.assertIn("seqwatch binary not found at /nonexistent/seqwatch", err)
        self.assertIn("Nothing was compared", err)

    def test_python_only_runs_without_a_binary(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, out, _ = run_main("--python-only", "--seqwatch", "/nonexistent/seqwatch", "--out", tmp,
                                      "--only", "production_rule", "--cases", "2", "--events", "40")
        self.assertEqual(status, 0, out)
        self.assertIn("seqwatch not run", out)

    def test_model_mode_compares_sequence_queries_only(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, out, _ = run_main("--model", "--out", tmp, "--only", "production_rule", "colon_equals",
                                      "--cases", "3", "--events", "60")
            summary = json.loads((Path(tmp) / "summary.json").read_text())
        self.assertEqual(status, 0, out)
        self.assertEqual([(q["name"], q["agreements"]) for q in summary["queries"]], [("production_rule", 3)])

    def test_unbuilt_replay_exits_2(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, _, err = run_main("--seqwatch", str(FAKE), "--out", tmp, "--only", "production_rule",
                                      env={"FAKE_SEQWATCH_BUG": "fail"})
        self.assertEqual(status, 2)
        self.assertIn("replay does not work yet", err)

    def test_agreement_with_a_faithful_replay(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, out, _ = run_main("--seqwatch", str(FAKE), "--out", tmp, "--only", "production_rule",
                                      "colon_wildcards", "--cases", "2", "--events", "40")
            summary = json.loads((Path(tmp) / "summary.json").read_text())
        self.assertEqual(status, 0, out)
        self.assertEqual([(q["cases"], q["agreements"]) for q in summary["queries"]], [(2, 2), (2, 2)])
        self.assertTrue(all(row["status"] == "holds" for row in summary["known_differences"]))

    def test_a_bug_is_found_and_shrunk_to_the_boundary_pair(self):
        """A replay that rejects a span equal to maxspan disagrees; the repro is the parent and
        the child exactly 10 s later, nothing else."""
        case = CASES["production_rule"]

        def shows_bug(seed):
            hits = gen.generate_stream(run.case_seed(seed, case.name, 0), case.stream_options(40))
            return fake_seqwatch._sequence_results(case, hits, "") != fake_seqwatch._sequence_results(
                case, hits, "exclusive-maxspan")

        seed = next(s for s in range(1, 200) if shows_bug(s))
        with tempfile.TemporaryDirectory() as tmp:
            status, out, _ = run_main("--seqwatch", str(FAKE), "--out", tmp, "--only", "production_rule",
                                      "--cases", "1", "--events", "40", "--seed", str(seed),
                                      env={"FAKE_SEQWATCH_BUG": "exclusive-maxspan"})
            self.assertEqual(status, 1, out)
            self.assertIn("disagree   1", out)
            repro = Path(tmp) / "repro" / "production_rule-case0"
            hits = seqwatch.read_ndjson(repro / "events.ndjson")
            meta = json.loads((repro / "repro.json").read_text())
        self.assertEqual(len(hits), 2)
        self.assertEqual(gen.hit_time_ms(hits[1]) - gen.hit_time_ms(hits[0]), 10000)
        self.assertEqual(meta["seqwatch_results"], [])
        self.assertEqual(len(meta["python_results"]), 1)
        self.assertGreater(meta["events_before_shrinking"], 30)


if __name__ == "__main__":
    unittest.main()
