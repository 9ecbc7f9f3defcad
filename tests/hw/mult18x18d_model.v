// Behavioural model of the Lattice ECP5 MULT18X18D, for simulating Requantizer(ecp5_dsp=True).
//
// Yosys ships only a black box of this primitive (share/ecp5/cells_bb.v; its cells_sim.v
// has none), so this model was written here from Lattice's description of the sysDSP block
// (FPGA-TN-02205, "ECP5 and ECP5-5G sysDSP Usage Guide"): P = A x B, each operand signed
// when its SIGNEDx input is high; optional input registers on A and B and an optional
// output register, each clocked by CLK0 with clock enable CE0 and synchronous reset RST0
// (RESETMODE "SYNC"). It covers exactly the configurations mnaccel instantiates and stops
// the simulation on any other, so that it cannot silently model a mode it does not know.
// Only the ports mnaccel connects are declared.
`default_nettype none
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE",
    parameter REG_INPUTB_CLK = "NONE",
    parameter REG_PIPELINE_CLK = "NONE",
    parameter REG_OUTPUT_CLK = "NONE",
    parameter RESETMODE = "SYNC"
) (
    input wire A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input wire B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input wire C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK0, CE0, RST0,
    output wire P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16,
    output wire P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31,
    output wire P32, P33, P34, P35
);
    initial begin
        if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
            || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
            || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")
            || REG_PIPELINE_CLK != "NONE" || RESETMODE != "SYNC")
            $fatal(1, "MULT18X18D model: unsupported register configuration");
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2,
                     A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2,
                     B1, B0};
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 18'd0;
            b_reg <= 18'd0;
        end else if (CE0) begin
            a_reg <= a;
            b_reg <= b;
        end
    end
    wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_reg : a;
    wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_reg : b;

    // Operands widened to 36 bits (sign- or zero-extended), product taken modulo 2**36.
    wire [35:0] a_ext = {{18{SIGNEDA & a_in[17]}}, a_in};
    wire [35:0] b_ext = {{18{SIGNEDB & b_in[17]}}, b_in};
    wire [35:0] product = a_ext * b_ext;

    reg [35:0] p_reg = 36'd0;
    always @(posedge CLK0) begin
        if (RST0) p_reg <= 36'd0;
        else if (CE0) p_reg <= product;
    end
    wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? p_reg : product;

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2,
            P1, P0} = p;

    // Only the parallel A and B inputs are modelled, not the shift chains.
    always @(posedge CLK0)
        if (SOURCEA | SOURCEB) $fatal(1, "MULT18X18D model: SOURCEA/SOURCEB must be 0");
    // C feeds only the MULTADDSUB/ALU modes, not modelled.
    wire unused = &{1'b0, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14,
                    C15, C16, C17};
endmodule
`default_nettype wire
