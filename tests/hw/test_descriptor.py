"""The descriptor format: plain-int packing agrees with Amaranth's layout; docs match."""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from mnaccel.hw.descriptor import (
    DESCRIPTOR_BYTES,
    PARAM_BYTES,
    PARAM_RECORD,
    Descriptor,
    Opcode,
    from_bytes,
    markdown_table,
    pack,
    to_bytes,
    unpack,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _random_values(layout, rng):
    values = {}
    for name, field in data.Layout.cast(layout):
        shape = Shape.cast(field.shape)
        if isinstance(field.shape, type):
            values[name] = rng.choice(list(field.shape)).value
        elif shape.signed:
            values[name] = rng.choice([-(1 << shape.width - 1), (1 << shape.width - 1) - 1,
                                       rng.randrange(-(1 << shape.width - 1),
                                                     1 << shape.width - 1)])
        else:
            values[name] = rng.choice([0, (1 << shape.width) - 1,
                                       rng.randrange(1 << shape.width)])
    return values


@pytest.mark.parametrize("layout", [Descriptor, PARAM_RECORD])
def test_pack_matches_amaranth_const(layout):
    rng = random.Random(5)
    for _ in range(50):
        values = _random_values(layout, rng)
        const = data.Layout.cast(layout).const(values)
        assert pack(layout, values) == const.as_value().value
        assert unpack(layout, pack(layout, values)) == values
        assert from_bytes(layout, to_bytes(layout, values)) == values


def test_sizes():
    assert data.Layout.cast(Descriptor).size <= DESCRIPTOR_BYTES * 8
    assert data.Layout.cast(PARAM_RECORD).size == PARAM_BYTES * 8
    assert len(to_bytes(Descriptor, {"opcode": Opcode.END}, DESCRIPTOR_BYTES)) == 64


def test_out_of_range_value_names_the_field():
    with pytest.raises(ValueError, match="field in_zp = 128"):
        pack(Descriptor, {"in_zp": 128})
    with pytest.raises(ValueError, match="unknown fields"):
        pack(Descriptor, {"bogus": 1})


def test_docs_hold_the_generated_tables():
    text = DOCS.read_text()
    assert markdown_table(Descriptor) in text
    assert markdown_table(PARAM_RECORD) in text
