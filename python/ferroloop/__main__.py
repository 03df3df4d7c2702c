"""`python -m ferroloop script.py [args]`: runs the script as `__main__` with ferroloop as the loop
of every `asyncio.run()` and `asyncio.new_event_loop()` in it."""

from __future__ import annotations

import runpy
import sys

from . import install


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m ferroloop script.py [args ...]", file=sys.stderr)
        raise SystemExit(2 if not argv else 0)
    install()
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
