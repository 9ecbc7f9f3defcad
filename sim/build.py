"""Verilog generation for benches and synthesis, cached by content.

Everything generated lands under one build root, ``$MNACCEL_BUILD_DIR`` or ``./build``
(gitignored). Files are named by a hash of their content and written only when absent, so
a rerun with unchanged gateware touches nothing and concurrent writers (pytest-xdist
workers) can only ever race to write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from amaranth.back import verilog

__all__ = ["build_root", "content_hash", "verilog_for", "write_atomic", "write_if_absent"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def build_root() -> Path:
    """The root of all generated files: ``$MNACCEL_BUILD_DIR`` or ``./build``, absolute."""
    return Path(os.environ.get("MNACCEL_BUILD_DIR") or "build").resolve()


def content_hash(*parts: str | bytes) -> str:
    """The first 12 hex digits of the SHA-256 of ``parts`` (each length-prefixed)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        # Length-prefix each part so that ("ab", "c") and ("a", "bc") hash differently.
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:12]


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory; return it.

    The rename makes the write atomic: a reader, a concurrent writer or an interruption
    never leaves a half-written ``path``. The file gets the permissions ``open()`` would
    give it (``mkstemp`` makes it private).

    Raises
    ------
    OSError
        If the directory cannot be written; no temporary file is left behind.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_if_absent(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with :func:`write_atomic` unless the file already exists.

    Returns ``path``. Several processes may write the same path at once: each rename is
    atomic and they all write the same content.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text)


def verilog_for(component, *, name: str) -> Path:
    """Convert ``component`` to Verilog with top module ``name``; return the file's path.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design. Its ports become the top module's ports (a stream port ``i`` becomes
        ``i__valid``, ``i__ready`` and ``i__payload``), plus ``clk`` and ``rst`` if it uses
        the ``sync`` domain.
    name : str
        Top module name; a Verilog identifier.

    Returns
    -------
    pathlib.Path
        ``<build root>/verilog/<name>-<hash>.v`` where ``<hash>`` is the first 12 hex digits
        of the SHA-256 of the Verilog text. Written only if absent.

    Raises
    ------
    ValueError
        If ``name`` is not a Verilog identifier.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    text = verilog.convert(component, name=name)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return write_if_absent(build_root() / "verilog" / f"{name}-{digest}.v", text)
