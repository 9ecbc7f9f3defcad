"""The per-layer table: MobileNetV1 pinned row by row, the zoo's totals, the formats, and
the documented discrepancies with the MobileNet notes."""

import csv
import io
import json
import re
from pathlib import Path

import pytest

from mnaccel.golden import zoo
from mnaccel.golden.errors import UserError
from mnaccel.golden.table import COLUMNS, format_table, macs, params, table_rows

ROOT = Path(__file__).resolve().parents[2]
NOTES_CSV = Path(__file__).parent / "data" / "mobilenet_notes_v1.csv"
V1_DOC = ROOT / "docs" / "mobilenet-v1-table.md"
ZOO_DOC = ROOT / "docs" / "model-zoo.md"


def _rows(name, **kw):
    return table_rows(zoo.build(name, calibrate=False, **kw))


def keras_v1_expected():
    """MobileNetV1 (alpha 1, 224) worked out from the Keras definition, independently of the
    graph: conv1 3x3/2 to 32 channels, 13 depthwise-separable blocks, a global average pool
    and the 1x1 classifier ``conv_preds`` on the pooled 1x1 map (an FC layer)."""
    rows = []
    width, ch = 224, 3
    out_w = width // 2
    n = out_w * out_w * 32
    rows.append(("conv", 0, 27 * 32, 2, 3, 224, n * 27, n * 26))
    width, ch = out_w, 32
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    index = 1
    for filters, stride in blocks:
        out_w = width // stride
        n = out_w * out_w * ch
        rows.append(("dw", index, 9 * ch, stride, ch, width, 9 * n, 8 * n))
        n = out_w * out_w * filters
        rows.append(("pw", index + 1, ch * filters, 1, ch, out_w, ch * n, (ch - 1) * n))
        index += 2
        width, ch = out_w, filters
    # the pool: 49 values summed (48 adds) and divided (1 multiply) per channel
    rows.append(("pool", None, 0, None, 1024, 7, 1024, 1024 * 48))
    rows.append(("fc", 27, 1024 * 1000, None, 1024, None, 1024 * 1000, 1023 * 1000))
    total = tuple(sum(r[i] for r in rows) for i in (2, 6, 7))
    rows.append(("sum", None, total[0], None, None, None, total[1], total[2]))
    return [r + (r[6] + r[7],) for r in rows]


def test_mobilenet_v1_table_matches_keras_architecture():
    got = [r.cells() for r in _rows("mobilenet_v1")]
    expected = keras_v1_expected()
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"row {e[0]} {e[1]}: table has {g}, Keras architecture gives {e}"


def test_mobilenet_v1_table_known_cells():
    """Cells worked out by hand, where the notes go wrong or the total is published."""
    rows = {(r.type, r.layer): r for r in _rows("mobilenet_v1")}
    conv0 = rows[("conv", 0)]
    # 112*112*32 outputs, each 27 multiplies and 26 adds; 3 input channels (RGB)
    assert (conv0.in_ch, conv0.mul, conv0.add) == (3, 10_838_016, 10_436_608)
    dw25 = rows[("dw", 25)]
    # Keras' block 13 has stride 1: 7*7*1024 outputs of 9 multiplies and 8 adds
    assert (dw25.stride, dw25.mul, dw25.add) == (1, 451_584, 401_408)
    assert rows[("fc", 27)].cells()[2:] == (
        1_024_000,
        None,
        1024,
        None,
        1_024_000,
        1_023_000,
        2_047_000,
    )
    assert rows[("sum", None)].params == 4_209_088
    assert macs(list(rows.values())) == 568_740_352


# (MACs, params) as published at alpha 1.0 and 224x224 (MobileNet papers, Keras, TF-slim);
# papers round or truncate, so the checks allow 1.5 % on MACs and 0.1 M on params.
PUBLISHED = {
    "mobilenet_v1": ((569e6, 569e6), (4.2e6, 4.2e6)),
    "mobilenet_v2": ((300e6, 300e6), (3.4e6, 3.4e6)),
    "mobilenet_v3_large": ((217e6, 219e6), (5.4e6, 5.4e6)),
    "mobilenet_v3_small": ((56e6, 66e6), (2.5e6, 2.9e6)),
}


@pytest.mark.parametrize("name", zoo.ZOO)
def test_totals_land_on_published_figures(name):
    (mac_lo, mac_hi), (par_lo, par_hi) = PUBLISHED[name]
    rows = _rows(name)
    assert mac_lo * 0.985 <= macs(rows) <= mac_hi * 1.015, f"{name}: {macs(rows)} MACs"
    assert par_lo - 0.1e6 <= params(rows) <= par_hi + 0.1e6, f"{name}: {params(rows)} params"


def test_totals_in_docs_are_those_of_the_table():
    text = ZOO_DOC.read_text()
    text = text[text.index("## Totals") :]
    for name in zoo.ZOO:
        rows = _rows(name)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{name}` "))
        numbers = [int(c.replace(",", "")) for c in re.findall(r"\b\d[\d,]{4,}\b", line)]
        assert macs(rows) in numbers and params(rows) in numbers, (name, line, numbers)


def test_rows_of_v3_large_have_every_kind():
    rows = _rows("mobilenet_v3_large")
    kinds = {r.type for r in rows}
    assert kinds == {"conv", "dw", "pw", "fc", "pool", "add", "mul", "hswish", "sum"}
    numbered = [r.layer for r in rows if r.type in ("conv", "dw", "pw", "fc")]
    assert numbered == list(range(len(numbered)))
    assert all(r.layer is None for r in rows if r.type not in ("conv", "dw", "pw", "fc"))
    # the first block's stride-1 5x5 SE depthwise at 28x28 (expanded_conv_4): 120 channels
    dw = next(r for r in rows if r.type == "dw" and r.in_ch == 120 and r.in_act_width == 28)
    assert (dw.params, dw.mul, dw.add) == (25 * 120, 28 * 28 * 120 * 25, 28 * 28 * 120 * 24)
    # squeeze-excite FCs of that block: 120 -> 32 -> 120
    fcs = [(r.in_ch, r.params) for r in rows if r.type == "fc"]
    assert (120, 120 * 32) in fcs and (32, 32 * 120) in fcs
    # classifier: Conv_2 960 -> 1280 and Logits 1280 -> 1000
    assert fcs[-2:] == [(960, 960 * 1280), (1280, 1280 * 1000)]


def test_csv_format():
    rows = _rows("mobilenet_v1")
    text = format_table(rows, "csv")
    lines = text.splitlines()
    assert lines[0] == "type,layer,params,stride,in_ch,in_act_width,mul,add,mul_add"
    assert lines[1] == "conv,0,864,2,3,224,10838016,10436608,21274624"
    assert lines[-2] == "fc,27,1024000,,1024,,1024000,1023000,2047000"
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows)


def test_json_format():
    rows = _rows("mobilenet_v2", alpha=0.5, resolution=128)
    data = json.loads(format_table(rows, "json"))
    assert [d["type"] for d in data] == [r.type for r in rows]
    assert set(data[0]) == {"name", *COLUMNS}
    assert data[0]["name"] == "Conv1"
    assert data[-1]["stride"] is None and data[-1]["mul_add"] == rows[-1].mul_add


def test_md_format():
    rows = _rows("mobilenet_v1")
    lines = format_table(rows, "md").splitlines()
    assert len(lines) == len(rows) + 2
    assert lines[0].startswith("| Type | Layer | # params |")
    assert lines[-1].startswith("| sum | - | 4209088 | - |")


def test_unknown_format_is_a_user_error():
    with pytest.raises(UserError, match="'xml'"):
        format_table([], "xml")


# --- the notes ------------------------------------------------------------------------------


def _notes():
    """The notes' table (transcribed in tests/golden/data), keyed by (type, layer)."""
    with NOTES_CSV.open() as f:
        return {(r["type"], r["layer"]): r for r in csv.DictReader(f)}


def _doc_section(title):
    text = V1_DOC.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_documented_discrepancies_are_exactly_the_differing_cells():
    ours = {}
    for r in _rows("mobilenet_v1"):
        key = (r.type, "" if r.layer is None else str(r.layer))
        cells = zip(COLUMNS, r.cells(), strict=True)
        ours[key] = {c: "" if v is None else str(v) for c, v in cells}
    differ = set()
    for key, noted in _notes().items():
        assert key in ours, f"the notes' row {key} has no counterpart"
        for col in COLUMNS:
            if noted[col] != ours[key][col]:
                differ.add((" ".join(key).strip(), col, noted[col], ours[key][col]))
    documented = set()
    for line in _doc_section("Discrepancies").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1] in COLUMNS:
            documented.add(
                (cells[0], cells[1], cells[2].replace(",", ""), cells[3].replace(",", ""))
            )
    assert documented == differ, (
        f"documented but not differing: {sorted(documented - differ)}; "
        f"differing but not documented: {sorted(differ - documented)}"
    )


def test_doc_table_is_the_command_output():
    expected = format_table(_rows("mobilenet_v1"), "md").strip()
    assert expected in _doc_section("The table")
