"""`python -m ferroloop script.py [args]` (or `-m module [args]`): runs the script or module as
`__main__`, as `python script.py` would, with ferroloop as the loop of every `asyncio.run()` and
`asyncio.new_event_loop()` in it."""

from __future__ import annotations

import builtins
import contextlib
import importlib.machinery
import io
import os
import runpy
import sys
import types
import zipfile

from . import install

USAGE = """usage: python -m ferroloop script.py [args ...]
       python -m ferroloop -m module [args ...]"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv == ["-m"]:
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] != "-m" else 2)
    install()
    if argv[0] == "-m":
        # What `python -m module` runs (since Python 2.7, in every version ferroloop supports):
        # the working directory stays first on sys.path, the module's file goes in sys.argv[0],
        # and a module that cannot be found is reported as python reports it.
        sys.argv = argv[1:]
        with _uncaught_reported_as_python_does():
            runpy._run_module_as_main(argv[1], alter_argv=True)
        return
    sys.argv = argv
    path = argv[0]
    if os.path.isdir(path) or zipfile.is_zipfile(path) or path.endswith(".pyc"):
        # A directory or zip file with a __main__.py, or compiled code: runpy puts a directory
        # or zip file first on sys.path itself, where `python -m` put the working directory.
        if _script_dir_on_path():
            del sys.path[0]
        runpy.run_path(path, run_name="__main__")
    else:
        _run_source(path)


def _script_dir_on_path() -> bool:
    """Whether `python script.py` would put the script's directory first on sys.path (and so
    `python -m` put the working directory there): not in safe-path or isolated mode."""
    return not (getattr(sys.flags, "safe_path", False) or sys.flags.isolated)


def _run_source(path: str) -> None:
    """Runs a source file as the `__main__` module, as `python script.py` does: its directory
    (symbolic links resolved) first on sys.path so that modules beside it import, `__file__` and
    the file name of its frames absolute, and an uncaught exception's traceback starting at the
    script, without this module's frames."""
    filename = os.path.abspath(path)
    if _script_dir_on_path():
        sys.path[0] = os.path.dirname(os.path.realpath(filename))
    try:
        with io.open_code(filename) as file:
            source = file.read()
    except OSError as exc:
        program = getattr(sys, "orig_argv", [sys.executable])[0]
        print(
            f"{program}: can't open file {filename!r}: [Errno {exc.errno}] {exc.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    module = types.ModuleType("__main__")
    module.__dict__.update(
        __file__=filename,
        __cached__=None,
        __builtins__=builtins,
        __loader__=importlib.machinery.SourceFileLoader("__main__", filename),
    )
    sys.modules["__main__"] = module
    with _uncaught_reported_as_python_does():
        exec(compile(source, filename, "exec"), module.__dict__)


@contextlib.contextmanager
def _uncaught_reported_as_python_does():
    """An exception that leaves the program is printed and ends it with status 1, as python does,
    its traceback starting where python's would: without this module's frames."""
    try:
        yield
    except Exception as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_globals is globals():
            tb = tb.tb_next
        exc.__traceback__ = tb
        sys.excepthook(type(exc), exc, exc.__traceback__)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
