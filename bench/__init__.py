"""Benchmarks for Gears, run by ``make bench`` (``python -m bench``).

Each section measures one part of the product against peers measured in the
same run on the same machine, and the report (:mod:`bench.report`) prints a
table and writes ``docs/performance.md``. Load generators only ever target
loopback, are bounded in count and time, and stop by themselves.
"""
