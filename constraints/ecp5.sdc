# Clock constraint for nextpnr-ecp5 (read with --sdc by `mnaccel synth --pnr`).
# `clk` is the clock port of every mnaccel block and of the accelerator top (Amaranth's
# sync domain). 5 ns = 200 MHz: issue 6's aim; its requirement is 150 MHz.
create_clock -period 5.000 -name clk [get_ports clk]
