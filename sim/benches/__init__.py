"""cocotb benches, one module per block, run through :func:`mnaccel.sim.runner.run_bench`.

Each module holds ``@cocotb.test()`` coroutines that read their parameters with
:func:`mnaccel.sim.benches.common.bench_params` and report measurements with
:func:`mnaccel.sim.benches.common.record`.
"""
