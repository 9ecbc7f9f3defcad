"""Resolve a model specification, a zoo name or a .tflite path, to a :class:`Graph`."""

from __future__ import annotations

import os

from mnaccel.golden.errors import UserError
from mnaccel.golden.graph import Graph

__all__ = ["load_model"]


def load_model(
    spec: str, *, alpha: float = 1.0, resolution: int = 224, seed: int = 0, calibrate=True
) -> Graph:
    """Load a zoo model by name or an int8 model from a ``.tflite`` file.

    Parameters
    ----------
    spec : str
        A name from :data:`mnaccel.golden.zoo.ZOO` or the path of a file ending in
        ``.tflite``.
    alpha, resolution, seed, calibrate
        Passed to :func:`mnaccel.golden.zoo.build`; ignored for ``.tflite`` files, whose
        width, resolution and weights are fixed.

    Raises
    ------
    UserError
        For anything else, and for whatever the zoo or the importer rejects.
    """
    from mnaccel.golden import zoo

    if spec in zoo.ZOO:
        return zoo.build(spec, alpha=alpha, resolution=resolution, seed=seed, calibrate=calibrate)
    if str(spec).lower().endswith(".tflite"):
        # Imported lazily: the importer pulls in the flatbuffer parser.
        from mnaccel.golden.tflite_import import load_tflite

        return load_tflite(spec)
    if os.path.isdir(spec):
        raise UserError(f"model {spec!r} is a directory; give a zoo name or a .tflite file")
    if os.path.exists(spec):
        raise UserError(
            f"model {spec!r} is not a .tflite file (mnaccel imports int8 TFLite flatbuffers, "
            f"named *.tflite)"
        )
    raise UserError(
        f"unknown model {spec!r}: give a zoo name ({', '.join(zoo.ZOO)}) "
        f"or the path of a .tflite file"
    )
