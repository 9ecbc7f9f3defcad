"""The layer compiler: Graph + AccelConfig → tiling plan, memory map, program and image.

:func:`~mnaccel.compiler.plan.plan` maps layers to descriptors and tiles them,
:func:`~mnaccel.compiler.image.compile_model` lays out memory and encodes the descriptors and
the memory image, :func:`~mnaccel.compiler.functional.execute` runs a compiled program in
NumPy in the order the hardware will, and :mod:`~mnaccel.compiler.cycle_model` counts its
cycles.
"""
