"""The CloudSync SQLite extension, bundled for Python.

This package carries the compiled loadable extension (``libcloudsync.so`` on Linux)
and two helpers:

* :func:`path` gives the absolute path of the bundled library, for any host that can
  load SQLite extensions (``.load`` in the ``sqlite3`` shell, another driver, ...).
* :func:`load` loads it into a :class:`sqlite3.Connection` or an ``apsw.Connection``
  and returns the extension's version.

Example::

    import sqlite3
    import cloudsync_sqlite

    conn = sqlite3.connect("notes.db", isolation_level=None)
    cloudsync_sqlite.load(conn)
    conn.execute("SELECT cloudsync_init('notes')")

SQLite derives the entry point from the file name (``libcloudsync.so`` ->
``sqlite3_cloudsync_init``), so loading by full path needs no entry point argument.
The module uses the standard library only; apsw is never imported by this package.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import sqlite3

    import apsw

    Connection = Union[sqlite3.Connection, apsw.Connection]

__all__ = ["__version__", "path", "load"]

#: Version of this package, the same as the extension's ``cloudsync_version()``.
__version__ = "@VERSION@"

# The library's file name on each platform. SQLite strips a leading "lib" and the
# extension to find the entry point, so every one of them resolves to
# sqlite3_cloudsync_init.
_LIBRARY_NAMES = {
    "linux": "libcloudsync.so",
    "darwin": "libcloudsync.dylib",
    "win32": "cloudsync.dll",
}
_PLATFORM_NAMES = {"linux": "Linux", "darwin": "macOS", "win32": "Windows"}

# The host ("sqlite3" or "apsw") this process loaded the library into. A loadable
# extension keeps one table of SQLite's functions per process, set by the library it
# was loaded into last; sqlite3 and apsw (from its wheels) each bring their own SQLite
# library, so loading into one after the other would leave the first one's connections
# calling into the wrong library (a crash, not an error). load() refuses that.
_loaded_into: Optional[str] = None


def _platform_key() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform in ("win32", "cygwin"):
        return "win32"
    return sys.platform


def path() -> str:
    """Return the absolute path of the bundled extension library.

    The library sits next to this file: ``libcloudsync.so`` on Linux,
    ``libcloudsync.dylib`` on macOS, ``cloudsync.dll`` on Windows.

    Raises:
        FileNotFoundError: the library for this platform is not in the package (the
            installed wheel was built for another platform, or the package is broken).
            The message names the file that was expected.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    key = _platform_key()
    expected = _LIBRARY_NAMES.get(key)
    if expected is not None:
        candidate = os.path.join(here, expected)
        if os.path.isfile(candidate):
            return candidate
    present = [
        (k, name) for k, name in _LIBRARY_NAMES.items() if os.path.isfile(os.path.join(here, name))
    ]
    if expected is None:
        wanted = f"no build of the extension exists for platform {sys.platform!r}"
    else:
        wanted = f"expected {os.path.join(here, expected)} ({_PLATFORM_NAMES[key]})"
    if present:
        found = ", ".join(f"{name} ({_PLATFORM_NAMES[k]})" for k, name in present)
        raise FileNotFoundError(
            f"cloudsync_sqlite: {wanted}, but this package contains {found}: the wheel "
            f"was built for another platform; install the wheel built for this one"
        )
    raise FileNotFoundError(
        f"cloudsync_sqlite: {wanted}, but the package contains no extension library: "
        f"the wheel was built for another platform or the installation is broken; "
        f"reinstall the wheel built for this platform"
    )


def _is_apsw_connection(conn: Any) -> bool:
    # Whoever holds an apsw.Connection has imported apsw already: look it up in
    # sys.modules rather than importing it here.
    apsw = sys.modules.get("apsw")
    if apsw is not None and isinstance(conn, getattr(apsw, "Connection", ())):
        return True
    cls = type(conn)
    return cls.__module__.split(".")[0] == "apsw" and cls.__name__ == "Connection"


def _is_sqlite3_connection(conn: Any) -> bool:
    # Same reasoning: a sqlite3.Connection exists only once sqlite3 is imported.
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(conn, getattr(sqlite3, "Connection", ()))


def _check_one_host(host: str) -> None:
    if _loaded_into is not None and _loaded_into != host:
        raise RuntimeError(
            f"cloudsync_sqlite: this process already loaded the extension into "
            f"{_loaded_into} connections, so it cannot load it into {host} connections "
            f"too: a loadable extension binds to one SQLite library per process, and "
            f"sqlite3 and apsw each bring their own, so the {_loaded_into} connections "
            f"would then crash. Use one of them per process (or separate processes)."
        )


def _loaded(host: str) -> None:
    global _loaded_into
    _loaded_into = host


def _load_into(conn: Any, host: str) -> None:
    # Both hosts spell it the same way: enable loading for this call only.
    _check_one_host(host)
    lib = path()
    conn.enable_load_extension(True)
    try:
        conn.load_extension(lib)
    finally:
        conn.enable_load_extension(False)
    _loaded(host)


def load(conn: "Connection") -> str:
    """Load the bundled extension into ``conn`` and return its version.

    ``conn`` is a :class:`sqlite3.Connection` (the standard library) or an
    ``apsw.Connection``. Extension loading is enabled for the call and disabled again
    afterwards, so SQL run later on the connection cannot load libraries
    (``SELECT load_extension(...)``). The functions the extension registers stay
    available on this connection only: load it into every connection that uses them.

    One process can use the extension from one of the two hosts only: sqlite3 and
    apsw each carry their own SQLite library, and a loadable extension binds to the
    library it was loaded into last, so after loading it into an apsw connection,
    sqlite3 connections that loaded it would crash (and the other way round). Loading
    into the second host is therefore refused with :class:`RuntimeError`.

    Returns:
        The extension's version, as ``SELECT cloudsync_version()`` gives it.

    Raises:
        RuntimeError: ``conn`` is a :class:`sqlite3.Connection` from a Python whose
            ``sqlite3`` module was built without extension loading; or this process
            already loaded the extension into connections of the other host.
        TypeError: ``conn`` is neither kind of connection.
        FileNotFoundError: see :func:`path`.
    """
    if _is_apsw_connection(conn):
        _load_into(conn, "apsw")
        for row in conn.cursor().execute("SELECT cloudsync_version()"):
            return str(row[0])
        raise RuntimeError("cloudsync_sqlite: SELECT cloudsync_version() returned no row")

    if _is_sqlite3_connection(conn):
        if not hasattr(conn, "enable_load_extension"):
            raise RuntimeError(
                "cloudsync_sqlite: this Python's sqlite3 module was built without "
                "extension loading (sqlite3.Connection has no enable_load_extension; "
                "common with pyenv and macOS system Pythons), so it cannot load "
                "the extension. Use apsw instead (pip install apsw; then pass an "
                "apsw.Connection to cloudsync_sqlite.load), or a Python whose sqlite3 "
                "supports enable_load_extension (e.g. a distribution's python3, or a "
                "pyenv build with PYTHON_CONFIGURE_OPTS=--enable-loadable-sqlite-extensions)."
            )
        _load_into(conn, "sqlite3")
        return str(conn.execute("SELECT cloudsync_version()").fetchone()[0])

    cls = type(conn)
    raise TypeError(
        f"cloudsync_sqlite.load() takes a sqlite3.Connection or an apsw.Connection, "
        f"not {cls.__module__}.{cls.__qualname__}; for another SQLite host, load the "
        f"library at cloudsync_sqlite.path() with that host's own extension loading"
    )
