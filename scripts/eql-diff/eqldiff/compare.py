"""Compares two result lists and shrinks a stream on which they disagree.

Results are lists in replay's shape (sequences with `join_keys` and `events`, or bare event
references). Both engines emit them in the same order (ascending by last event), so the lists
are compared as lists; a difference in order alone is reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


def _canonical(result: dict) -> str:
    return json.dumps(result, sort_keys=True)


@dataclass
class Comparison:
    """The outcome of comparing Python's results with seqwatch's."""

    python: list[dict]
    seqwatch: list[dict]
    only_python: list[dict] = field(default_factory=list)
    only_seqwatch: list[dict] = field(default_factory=list)
    order_differs: bool = False

    @property
    def agree(self) -> bool:
        """True if both engines returned the same results in the same order."""
        return not self.only_python and not self.only_seqwatch and not self.order_differs

    def describe(self) -> str:
        """A short human-readable account of the disagreement (empty if they agree)."""
        if self.agree:
            return ""
        lines = [f"python: {len(self.python)} result(s), seqwatch: {len(self.seqwatch)} result(s)"]
        for result in self.only_python:
            lines.append(f"  only python:   {_canonical(result)}")
        for result in self.only_seqwatch:
            lines.append(f"  only seqwatch: {_canonical(result)}")
        if self.order_differs:
            lines.append("  same results, different order")
        return "\n".join(lines)


def compare(python: list[dict], seqwatch: list[dict]) -> Comparison:
    """Compare as multisets first, then as ordered lists."""
    outcome = Comparison(python=python, seqwatch=seqwatch)
    remaining = [_canonical(r) for r in seqwatch]
    for result in python:
        key = _canonical(result)
        if key in remaining:
            remaining.remove(key)
        else:
            outcome.only_python.append(result)
    seen_python = [_canonical(r) for r in python]
    for result in seqwatch:
        key = _canonical(result)
        if key in seen_python:
            seen_python.remove(key)
        else:
            outcome.only_seqwatch.append(result)
    if not outcome.only_python and not outcome.only_seqwatch:
        outcome.order_differs = [_canonical(r) for r in python] != [_canonical(r) for r in seqwatch]
    return outcome


def shrink(items: list, still_fails: Callable[[list], bool], max_checks: int = 2000) -> list:
    """Delta debugging (ddmin): a smallest-found sublist on which `still_fails` is still true.

    `items` must fail to begin with. Order is preserved. Chunks are removed first (halves,
    quarters, ...), then single items until no single removal keeps the failure
    (1-minimal) or `max_checks` calls have been made.
    """
    current = list(items)
    checks = 0
    granularity = 2
    while len(current) >= 2 and checks < max_checks:
        size = max(1, len(current) // granularity)
        reduced = False
        start = 0
        while start < len(current) and checks < max_checks:
            candidate = current[:start] + current[start + size:]
            checks += 1
            if candidate and still_fails(candidate):
                current = candidate
                reduced = True
                # keep the same start: the next chunk has moved into this place
            else:
                start += size
        if reduced:
            granularity = max(granularity - 1, 2)
        elif size == 1:
            break
        else:
            granularity = min(granularity * 2, len(current))
    return current
