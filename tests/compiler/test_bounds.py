"""The lower bounds of compiler/bounds.py against hand counts and the cycle model."""

from __future__ import annotations

import pytest

from mnaccel.compiler.bounds import _main, bounds, ceiling
from mnaccel.compiler.cycle_model import model
from mnaccel.compiler.plan import plan
from mnaccel.golden.model import load_model
from mnaccel.hw.config import preset


@pytest.fixture(scope="module", params=["small", "ecp5-85f"])
def v1_plan(request):
    graph = load_model("mobilenet_v1", alpha=0.25, resolution=32, calibrate=False)
    return plan(graph, preset(request.param))


def test_no_step_of_the_cycle_model_beats_its_bound(v1_plan):
    for b, m in zip(bounds(v1_plan), model(v1_plan), strict=True):
        assert b.name == m.name
        assert b.cycles <= m.cycles, f"{b.name}: bound {b.resources} > model {m.cycles}"


def test_resources_are_the_hand_counts(v1_plan):
    cfg = v1_plan.config
    for step, b in zip(v1_plan.steps, bounds(v1_plan), strict=True):
        r = b.resources
        if step.opcode.name == "DW_PW":
            assert r["dw"] == step.out_h * step.out_w * -(-step.in_c // cfg.dw_lanes)
            assert r["line buffer"] == step.in_h * step.in_w * -(-step.in_c // cfg.lb_in_lanes)
        if step.opcode.name == "FC":
            # One pixel: every weight tile holds the array for its weight load, pw_rows rows
            # in pw_rows / pw_weight_rows cycles.
            load = cfg.pw_rows // cfg.pw_weight_rows
            assert r["pw"] == step.j_chunks * step.k_chunks * load
            # ... or its weight reads, which two rows per cycle leave as the limit.
            assert b.bound == max(("pw", "read"), key=r.get)
        if step.opcode.name in ("DW_PW", "PW"):
            assert r["pw"] >= step.pixels * step.j_chunks * step.k_chunks
        assert r["read"] * (cfg.axi_data_width // 8) >= v1_plan.storage(step.input).nbytes


def test_ceiling_is_macs_over_bound_cycles_times_multipliers(v1_plan):
    c = ceiling(v1_plan)
    assert c["cycles"] == sum(b.cycles for b in bounds(v1_plan))
    assert c["multipliers"] == v1_plan.config.multipliers
    assert c["utilization"] == pytest.approx(c["macs"] / (c["cycles"] * c["multipliers"]))
    assert 0 < c["utilization"] <= 1


def test_command_line(capsys):
    assert _main(["mobilenet_v1", "ecp5-85f"]) == 0
    out = capsys.readouterr().out
    assert "utilization ceiling" in out and "| conv_preds | FC |" in out
    assert _main(["mobilenet_v1", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown configuration preset" in err
