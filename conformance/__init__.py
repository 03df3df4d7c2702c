"""CPython's own asyncio test-suite, run against ferroloop (see run.py)."""
