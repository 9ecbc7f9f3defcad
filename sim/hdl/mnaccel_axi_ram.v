// External memory for whole-network simulations: an AXI4 subordinate RAM in Verilog.
//
// The system bench's default memory is cocotbext-axi's AxiRam, in Python: flexible (pause
// generators on every channel) but it costs a Python wake-up per beat, which dominates a
// full MobileNet run. This model keeps the memory inside the simulator, so that Python
// only runs at the host's register accesses and interrupts (sim/memory.py wraps it around
// the accelerator; docs/hw/simulation.md has the timing).
//
// Timing (fixed, so that the cycle model can describe it — compiler/cycle_model.py):
//   * AR and AW are accepted into FIFOs of FIFO_DEPTH entries (ready while not full).
//   * A read burst starts READ_LATENCY cycles after its AR handshake at the earliest, and
//     after the previous burst's last beat; its beats are then one per cycle while RREADY.
//   * Write data is accepted one beat per cycle (WREADY) once its AW has been accepted;
//     the B response follows the last beat by one cycle.
// Only INCR bursts of the full bus width are modelled (what the DMA issues); anything else
// stops the simulation with an error, as does an access beyond the memory.
//
// Contents: a `mem_load` pulse zeroes the memory, then reads the hex file named by the
// plusarg +mem_image=PATH (default mem_image.hex in the simulator's working directory;
// $readmemh: one word per line, most significant byte first); a `mem_dump` pulse writes
// words 0 .. mem_dump_words-1 to +mem_dump=PATH (default mem_dump.hex; $writememh).
`default_nettype none

module mnaccel_axi_ram #(
    parameter DATA_WIDTH = 128,
    parameter ADDR_WIDTH = 32,
    parameter ID_WIDTH = 1,
    parameter DEPTH_LOG2 = 20,      // words of DATA_WIDTH bits
    parameter READ_LATENCY = 2,
    parameter FIFO_DEPTH = 4
) (
    input  wire                    clk,
    input  wire                    rst,
    input  wire                    mem_load,
    input  wire                    mem_dump,
    input  wire [31:0]             mem_dump_words,

    input  wire [ID_WIDTH-1:0]     awid,
    input  wire [ADDR_WIDTH-1:0]   awaddr,
    input  wire [7:0]              awlen,
    input  wire [2:0]              awsize,
    input  wire [1:0]              awburst,
    input  wire                    awvalid,
    output wire                    awready,
    input  wire [DATA_WIDTH-1:0]   wdata,
    input  wire [DATA_WIDTH/8-1:0] wstrb,
    input  wire                    wlast,
    input  wire                    wvalid,
    output wire                    wready,
    output wire [ID_WIDTH-1:0]     bid,
    output wire [1:0]              bresp,
    output wire                    bvalid,
    input  wire                    bready,

    input  wire [ID_WIDTH-1:0]     arid,
    input  wire [ADDR_WIDTH-1:0]   araddr,
    input  wire [7:0]              arlen,
    input  wire [2:0]              arsize,
    input  wire [1:0]              arburst,
    input  wire                    arvalid,
    output wire                    arready,
    output wire [ID_WIDTH-1:0]     rid,
    output wire [DATA_WIDTH-1:0]   rdata,
    output wire [1:0]              rresp,
    output wire                    rlast,
    output wire                    rvalid,
    input  wire                    rready
);
    localparam BYTES = DATA_WIDTH / 8;
    localparam LANE_BITS = $clog2(BYTES);
    localparam WORDS = 1 << DEPTH_LOG2;
    localparam FIFO_BITS = $clog2(FIFO_DEPTH);

    reg [DATA_WIDTH-1:0] mem [0:WORDS-1];
    reg [63:0] now;

    // ---- contents ------------------------------------------------------------------------
    reg [8*1024-1:0] image_path, dump_path;
    integer i;
    initial begin
        if (!$value$plusargs("mem_image=%s", image_path)) image_path = "mem_image.hex";
        if (!$value$plusargs("mem_dump=%s", dump_path)) dump_path = "mem_dump.hex";
        for (i = 0; i < WORDS; i = i + 1) mem[i] = {DATA_WIDTH{1'b0}};
    end
    always @(posedge clk) begin
        if (mem_load) begin
            for (i = 0; i < WORDS; i = i + 1) mem[i] = {DATA_WIDTH{1'b0}};
            $readmemh(image_path, mem);
        end
        if (mem_dump)
            $writememh(dump_path, mem, 0, mem_dump_words - 1);
    end

    // ---- read address FIFO: address, beats, id, earliest start ----------------------------
    reg [ADDR_WIDTH-1:0] ar_addr [0:FIFO_DEPTH-1];
    reg [7:0]            ar_len  [0:FIFO_DEPTH-1];
    reg [ID_WIDTH-1:0]   ar_id   [0:FIFO_DEPTH-1];
    reg [63:0]           ar_time [0:FIFO_DEPTH-1];
    reg [FIFO_BITS:0]    ar_wp, ar_rp;
    // The difference at the pointers' own width: compared with the (32-bit) parameter
    // directly it would be taken at 32 bits, and wrapped pointers would never read full.
    wire [FIFO_BITS:0] ar_count = ar_wp - ar_rp;
    wire ar_full = ar_count == FIFO_DEPTH;
    wire ar_empty = ar_wp == ar_rp;
    assign arready = !rst && !ar_full;

    reg                    r_busy;
    reg [DEPTH_LOG2-1:0]   r_word;
    reg [7:0]              r_left;
    reg [ID_WIDTH-1:0]     r_id;
    assign rvalid = r_busy;
    assign rdata = mem[r_word];
    assign rlast = r_busy && r_left == 0;
    assign rid = r_id;
    assign rresp = 2'b00;

    wire [ADDR_WIDTH-1:0] head_addr = ar_addr[ar_rp[FIFO_BITS-1:0]];
    wire r_start = !ar_empty && ar_time[ar_rp[FIFO_BITS-1:0]] <= now
                   && (!r_busy || (rready && r_left == 0));

    always @(posedge clk) begin
        if (rst) begin
            now <= 0;
            ar_wp <= 0;
            ar_rp <= 0;
            r_busy <= 0;
        end else begin
            now <= now + 1;
            if (arvalid && arready) begin
                if (arburst != 2'b01 || arsize != LANE_BITS) begin
                    $display("mnaccel_axi_ram: unsupported read burst %0d size %0d at %h",
                             arburst, arsize, araddr);
                    $finish;
                end
                if ((araddr >> LANE_BITS) + arlen >= WORDS) begin
                    $display("mnaccel_axi_ram: read beyond the memory at %h", araddr);
                    $finish;
                end
                ar_addr[ar_wp[FIFO_BITS-1:0]] <= araddr;
                ar_len[ar_wp[FIFO_BITS-1:0]] <= arlen;
                ar_id[ar_wp[FIFO_BITS-1:0]] <= arid;
                ar_time[ar_wp[FIFO_BITS-1:0]] <= now + READ_LATENCY;
                ar_wp <= ar_wp + 1;
            end
            if (r_start) begin
                r_busy <= 1;
                r_word <= head_addr[LANE_BITS +: DEPTH_LOG2];
                r_left <= ar_len[ar_rp[FIFO_BITS-1:0]];
                r_id <= ar_id[ar_rp[FIFO_BITS-1:0]];
                ar_rp <= ar_rp + 1;
            end else if (r_busy && rready) begin
                if (r_left == 0)
                    r_busy <= 0;
                else begin
                    r_left <= r_left - 1;
                    r_word <= r_word + 1;
                end
            end
        end
    end

    // ---- writes -------------------------------------------------------------------------
    reg [ADDR_WIDTH-1:0] aw_addr [0:FIFO_DEPTH-1];
    reg [ID_WIDTH-1:0]   aw_id   [0:FIFO_DEPTH-1];
    reg [FIFO_BITS:0]    aw_wp, aw_rp;
    wire aw_empty = aw_wp == aw_rp;

    reg                    w_busy;
    reg [DEPTH_LOG2-1:0]   w_word;
    reg [ID_WIDTH-1:0]     w_id;
    // Responses waiting for BREADY (at most one per accepted AW).
    reg [ID_WIDTH-1:0]     b_id [0:FIFO_DEPTH-1];
    reg [FIFO_BITS:0]      b_wp, b_rp;
    // Bounded by the responses not yet taken, so that the B FIFO cannot overflow (the
    // difference at the pointers' width, as for ar_count).
    wire [FIFO_BITS:0] aw_count = aw_wp - b_rp;
    assign awready = !rst && aw_count < FIFO_DEPTH;
    assign wready = !rst && w_busy;
    assign bvalid = b_wp != b_rp;
    assign bid = b_id[b_rp[FIFO_BITS-1:0]];
    assign bresp = 2'b00;

    integer b;
    always @(posedge clk) begin
        if (rst) begin
            aw_wp <= 0;
            aw_rp <= 0;
            w_busy <= 0;
            b_wp <= 0;
            b_rp <= 0;
        end else begin
            if (awvalid && awready) begin
                if (awburst != 2'b01 || awsize != LANE_BITS) begin
                    $display("mnaccel_axi_ram: unsupported write burst %0d size %0d at %h",
                             awburst, awsize, awaddr);
                    $finish;
                end
                if ((awaddr >> LANE_BITS) + awlen >= WORDS) begin
                    $display("mnaccel_axi_ram: write beyond the memory at %h", awaddr);
                    $finish;
                end
                aw_addr[aw_wp[FIFO_BITS-1:0]] <= awaddr;
                aw_id[aw_wp[FIFO_BITS-1:0]] <= awid;
                aw_wp <= aw_wp + 1;
            end
            if (!w_busy && !aw_empty) begin
                w_busy <= 1;
                w_word <= aw_addr[aw_rp[FIFO_BITS-1:0]][LANE_BITS +: DEPTH_LOG2];
                w_id <= aw_id[aw_rp[FIFO_BITS-1:0]];
                aw_rp <= aw_rp + 1;
            end
            if (w_busy && wvalid) begin
                for (b = 0; b < BYTES; b = b + 1)
                    if (wstrb[b]) mem[w_word][8*b +: 8] <= wdata[8*b +: 8];
                w_word <= w_word + 1;
                if (wlast) begin
                    w_busy <= 0;
                    b_id[b_wp[FIFO_BITS-1:0]] <= w_id;
                    b_wp <= b_wp + 1;
                end
            end
            if (bvalid && bready)
                b_rp <= b_rp + 1;
        end
    end
endmodule

`default_nettype wire
