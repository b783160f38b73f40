"""Benchmark harness of threadmem-mongo: ``python -m bench`` (see ``bench/README.md``).

Importing this package imports nothing else, so the driver scripts in
:mod:`bench.drivers` can run in interpreters that do not have threadmem-mongo.
"""
