"""Differential test of seqwatch's EQL engine against the Python `eql` package.

The package owns: random event streams shaped like Elastic Defend / CrowdStrike FDR process
events (`gen`), running a query through the Python engine (`pyengine`), running the same stream
through `seqwatch replay` (`seqwatch`), the query cases (`queries`), the comparison and the
shrinking of disagreements (`compare`), and the cases that demonstrate the documented
differences between the two engines (`known`). See docs/eql-differences.md.
"""
