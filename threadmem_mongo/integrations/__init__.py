"""Adapters that put threadmem-mongo behind agent frameworks' memory interfaces.

Each adapter lives in its own module and imports its framework only there; install the
matching extra (``pip install "threadmem-mongo[langchain]"``, ...) to use it. Importing
this package imports no framework.
"""
