// Simulation model of the ECP5 DP16KD block RAM, as mnaccel instantiates it
// (hw/line_buffer.py, RegisteredMemory): port A writes, port B reads; data widths 36
// (pseudo dual port: port A's address and byte enables write {DIB, DIA}, port B reads
// {DOB, DOA}), 18, 9 or 4; REGMODE "OUTREG" puts the read word in the output register one
// clock after the read. Yosys ships the primitive as a black box only.
//
// A read of the entry being written at the same clock edge returns the inverted old word:
// the hardware promises nothing across ports, and the designs must never use such a word;
// the poison makes a bench fail if they do.
module DP16KD #(
    parameter integer DATA_WIDTH_A = 18,
    parameter integer DATA_WIDTH_B = 18,
    parameter REGMODE_A = "NOREG",
    parameter REGMODE_B = "NOREG",
    parameter RESETMODE = "SYNC",
    parameter ASYNC_RESET_RELEASE = "SYNC",
    parameter CSDECODE_A = "0b000",
    parameter CSDECODE_B = "0b000",
    parameter WRITEMODE_A = "NORMAL",
    parameter WRITEMODE_B = "NORMAL",
    parameter GSR = "ENABLED"
) (
    input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6,
          DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1,
          ADA0,
    input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
           DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6,
          DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1,
          ADB0,
    input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
           DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    localparam integer W = DATA_WIDTH_B;
    localparam integer SH = W == 36 ? 5 : W == 18 ? 4 : W == 9 ? 3 : 2;
    localparam integer DEPTH = 1 << (14 - SH);

    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8,
                       DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8,
                       DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3,
                       ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3,
                       ADB2, ADB1, ADB0};
    wire [13 - SH:0] waddr = ada[13:SH];
    wire [13 - SH:0] raddr = adb[13:SH];
    wire [35:0] wdata = {dib, dia};
    wire wen = CEA && WEA && (W == 36 ? ada[3:0] == 4'b1111 : W == 18 ? ada[1:0] == 2'b11
                                                                      : 1'b1);

    reg [W - 1:0] mem [0:DEPTH - 1];
    reg [W - 1:0] q = 0;
    reg [W - 1:0] out = 0;

    always @(posedge CLKA) begin
        if (wen)
            mem[waddr] <= wdata[W - 1:0];
    end
    always @(posedge CLKB) begin
        if (CEB)
            q <= (wen && waddr == raddr) ? ~mem[raddr] : mem[raddr];
        if (OCEB)
            out <= q;
    end

    wire [35:0] rd = REGMODE_B == "OUTREG" ? {{(36 - W){1'b0}}, out} : {{(36 - W){1'b0}}, q};
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
            DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = W == 36 ? rd[35:18] : rd[17:0];
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
            DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = rd[17:0];
endmodule
