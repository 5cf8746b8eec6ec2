"""Benchmarks run against the live stack (``streamrec bench ...``); not part of the installed package."""
