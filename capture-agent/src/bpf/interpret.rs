//! A user-space classic BPF interpreter with the Linux kernel's semantics.
//!
//! It exists so that tests (and anyone debugging a filter) can run exactly the program the kernel
//! would run, frame by frame, and compare the verdict with libpcap's. The semantics follow the
//! kernel's classic-BPF path (`bpf_convert_filter` and the eBPF interpreter it feeds):
//!
//! - A, X and the 16 scratch words start at 0 (the kernel clears A and X in the prologue it emits
//!   for every classic program; the static checker refuses programs that read a scratch word
//!   before writing it, so its initial value is never observable there);
//! - a packet load that does not fit inside the frame ends the program with return value 0, which
//!   means "drop": this is what makes truncated frames fail filters that look past their end;
//! - division or modulo by X = 0 ends the program with return value 0;
//! - shifts by X use the low 5 bits of X, as the x86-64 and arm64 JITs do;
//! - ancillary loads (`SKF_AD_OFF`, `SKF_NET_OFF`, `SKF_LL_OFF`: negative offsets) need socket
//!   buffer metadata a byte slice does not have, so they are unsupported and return 0. The
//!   generator never emits them.

use super::program::{AluOp, JumpTest, Op, Size, Source, MEMORY_WORDS};
use super::Program;

/// Runs a program over a frame in user space with the kernel's semantics (out-of-bounds load =>
/// return 0). For tests and for checking.
pub fn interpret(program: &Program, frame: &[u8]) -> u32 {
    run(program, frame).unwrap_or(0)
}

/// The interpreter proper; `None` is every way a program can end with "drop" other than an
/// explicit `ret #0` (bad load, division by zero, and — impossible for a validated program —
/// running off the end or an unknown opcode).
fn run(program: &Program, frame: &[u8]) -> Option<u32> {
    let instructions = program.instructions();
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut memory = [0u32; MEMORY_WORDS as usize];
    let mut pc: usize = 0;
    loop {
        let instruction = instructions.get(pc)?;
        let k = instruction.k;
        pc += 1;
        match Op::decode(instruction.code)? {
            Op::LdAbs(size) => a = load(frame, k, size)?,
            // The kernel adds X and k as 32-bit values and then treats the sum as a signed
            // offset; a negative sum is an ancillary/extension offset, which `load` refuses.
            Op::LdInd(size) => a = load(frame, x.wrapping_add(k), size)?,
            Op::LdLen => a = frame_length(frame),
            Op::LdImm => a = k,
            Op::LdMem => a = *memory.get(usize::try_from(k).ok()?)?,
            Op::LdxImm => x = k,
            Op::LdxMem => x = *memory.get(usize::try_from(k).ok()?)?,
            Op::LdxLen => x = frame_length(frame),
            Op::LdxMsh => x = 4 * (load(frame, k, Size::Byte)? & 0xf),
            Op::St => *memory.get_mut(usize::try_from(k).ok()?)? = a,
            Op::Stx => *memory.get_mut(usize::try_from(k).ok()?)? = x,
            Op::Alu(op, source) => {
                let operand = match source {
                    Source::K => k,
                    Source::X => x,
                };
                a = alu(op, a, operand)?;
            }
            Op::Neg => a = a.wrapping_neg(),
            Op::Ja => pc = pc.checked_add(usize::try_from(k).ok()?)?,
            Op::Jump(test, source) => {
                let operand = match source {
                    Source::K => k,
                    Source::X => x,
                };
                let taken = match test {
                    JumpTest::Eq => a == operand,
                    JumpTest::Gt => a > operand,
                    JumpTest::Ge => a >= operand,
                    JumpTest::Set => a & operand != 0,
                };
                pc += usize::from(if taken {
                    instruction.jt
                } else {
                    instruction.jf
                });
            }
            Op::RetK => return Some(k),
            Op::RetA => return Some(a),
            Op::Tax => x = a,
            Op::Txa => a = x,
        }
    }
}

/// Frames longer than 4 GiB do not exist; saturate rather than wrap if one ever did.
fn frame_length(frame: &[u8]) -> u32 {
    u32::try_from(frame.len()).unwrap_or(u32::MAX)
}

/// A big-endian (network order) load of `size` bytes at `offset`, or `None` when it does not fit.
/// Offsets with the top bit set are the kernel's negative ancillary offsets: unsupported here.
fn load(frame: &[u8], offset: u32, size: Size) -> Option<u32> {
    if offset >= 0x8000_0000 {
        return None;
    }
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size.bytes()).ok()?)?;
    let bytes = frame.get(start..end)?;
    Some(
        bytes
            .iter()
            .fold(0u32, |value, &byte| (value << 8) | u32::from(byte)),
    )
}

fn alu(op: AluOp, a: u32, operand: u32) -> Option<u32> {
    Some(match op {
        AluOp::Add => a.wrapping_add(operand),
        AluOp::Sub => a.wrapping_sub(operand),
        AluOp::Mul => a.wrapping_mul(operand),
        AluOp::Div => a.checked_div(operand)?,
        AluOp::Mod => a.checked_rem(operand)?,
        AluOp::Or => a | operand,
        AluOp::And => a & operand,
        AluOp::Xor => a ^ operand,
        AluOp::Lsh => a.wrapping_shl(operand),
        AluOp::Rsh => a.wrapping_shr(operand),
    })
}

#[cfg(test)]
mod tests {
    use super::super::program::*;
    use super::*;

    fn program(instructions: &[Instruction]) -> Program {
        Program::new(instructions.to_vec()).unwrap()
    }

    fn stmt(code: u16, k: u32) -> Instruction {
        Instruction::stmt(code, k)
    }

    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
        Instruction::jump(code, k, jt, jf)
    }

    const RET_A: Instruction = Instruction::stmt(BPF_RET | BPF_A, 0);

    #[test]
    fn loads_are_big_endian_and_bounds_checked() {
        let frame = [0x12, 0x34, 0x56, 0x78, 0x9a];
        let word = program(&[stmt(BPF_LD | BPF_W | BPF_ABS, 1), RET_A]);
        assert_eq!(interpret(&word, &frame), 0x3456_789a);
        let half = program(&[stmt(BPF_LD | BPF_H | BPF_ABS, 3), RET_A]);
        assert_eq!(interpret(&half, &frame), 0x789a);
        let byte = program(&[stmt(BPF_LD | BPF_B | BPF_ABS, 4), RET_A]);
        assert_eq!(interpret(&byte, &frame), 0x9a);
        // One byte too far: the kernel drops the packet (return 0) instead of returning A.
        let past = program(&[stmt(BPF_LD | BPF_H | BPF_ABS, 4), stmt(BPF_RET | BPF_K, 7)]);
        assert_eq!(interpret(&past, &frame), 0);
        let far = program(&[
            stmt(BPF_LD | BPF_W | BPF_ABS, u32::MAX - 1),
            stmt(BPF_RET | BPF_K, 7),
        ]);
        assert_eq!(interpret(&far, &frame), 0);
    }

    #[test]
    fn indexed_loads_and_msh() {
        let frame = [0x45, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        // X = 4 * (0x45 & 0xf) = 20: past the end of this short frame for an indexed load...
        let msh = program(&[
            stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
            stmt(BPF_MISC | BPF_TXA, 0),
            RET_A,
        ]);
        assert_eq!(interpret(&msh, &frame), 20);
        let ind = program(&[
            stmt(BPF_LDX | BPF_W | BPF_IMM, 2),
            stmt(BPF_LD | BPF_H | BPF_IND, 3),
            RET_A,
        ]);
        assert_eq!(interpret(&ind, &frame), 0xbbcc);
        let ind_past = program(&[
            stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
            stmt(BPF_LD | BPF_B | BPF_IND, 0),
            stmt(BPF_RET | BPF_K, 9),
        ]);
        assert_eq!(interpret(&ind_past, &frame), 0);
        // X + k wrapping to a "negative" offset is an ancillary access: unsupported, so 0.
        let negative = program(&[
            stmt(BPF_LDX | BPF_W | BPF_IMM, 0xffff_f000),
            stmt(BPF_LD | BPF_B | BPF_IND, 4),
            stmt(BPF_RET | BPF_K, 9),
        ]);
        assert_eq!(interpret(&negative, &frame), 0);
        let msh_past = program(&[stmt(BPF_LDX | BPF_B | BPF_MSH, 8), stmt(BPF_RET | BPF_K, 9)]);
        assert_eq!(interpret(&msh_past, &frame), 0);
    }

    #[test]
    fn length_immediates_memory_and_transfers() {
        let frame = [0u8; 60];
        let len = program(&[stmt(BPF_LD | BPF_W | BPF_LEN, 0), RET_A]);
        assert_eq!(interpret(&len, &frame), 60);
        let memory = program(&[
            stmt(BPF_LD | BPF_W | BPF_IMM, 11),
            stmt(BPF_ST, 15),
            stmt(BPF_LDX | BPF_W | BPF_LEN, 0),
            stmt(BPF_STX, 3),
            stmt(BPF_LDX | BPF_W | BPF_MEM, 15),
            stmt(BPF_LD | BPF_W | BPF_MEM, 3),
            stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
            RET_A,
        ]);
        assert_eq!(interpret(&memory, &frame), 71);
        let transfers = program(&[
            stmt(BPF_LDX | BPF_W | BPF_IMM, 5),
            stmt(BPF_MISC | BPF_TXA, 0),
            stmt(BPF_ALU | BPF_MUL | BPF_K, 3),
            stmt(BPF_MISC | BPF_TAX, 0),
            stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
            RET_A,
        ]);
        assert_eq!(interpret(&transfers, &frame), 30);
    }

    #[test]
    fn alu_operations() {
        let cases: [(u16, u32, u32, u32); 12] = [
            (BPF_ADD, 0xffff_ffff, 2, 1),
            (BPF_SUB, 1, 2, 0xffff_ffff),
            (BPF_MUL, 0x1_0000, 0x1_0000, 0),
            (BPF_DIV, 17, 5, 3),
            (BPF_MOD, 17, 5, 2),
            (BPF_OR, 0xf0, 0x0f, 0xff),
            (BPF_AND, 0xf0, 0x3c, 0x30),
            (BPF_XOR, 0xff, 0x0f, 0xf0),
            (BPF_LSH, 1, 31, 0x8000_0000),
            (BPF_RSH, 0x8000_0000, 31, 1),
            (BPF_LSH, 3, 0, 3),
            (BPF_RSH, 0xff, 4, 0xf),
        ];
        for (op, a, operand, expected) in cases {
            let with_k = program(&[
                stmt(BPF_LD | BPF_W | BPF_IMM, a),
                stmt(BPF_ALU | op | BPF_K, operand),
                RET_A,
            ]);
            assert_eq!(interpret(&with_k, &[]), expected, "op {op:#x} K");
            let with_x = program(&[
                stmt(BPF_LD | BPF_W | BPF_IMM, a),
                stmt(BPF_LDX | BPF_W | BPF_IMM, operand),
                stmt(BPF_ALU | op | BPF_X, 0),
                RET_A,
            ]);
            assert_eq!(interpret(&with_x, &[]), expected, "op {op:#x} X");
        }
        let neg = program(&[
            stmt(BPF_LD | BPF_W | BPF_IMM, 1),
            stmt(BPF_ALU | BPF_NEG, 0),
            RET_A,
        ]);
        assert_eq!(interpret(&neg, &[]), 0xffff_ffff);
    }

    #[test]
    fn division_by_x_zero_drops() {
        for op in [BPF_DIV, BPF_MOD] {
            let p = program(&[
                stmt(BPF_LD | BPF_W | BPF_IMM, 10),
                stmt(BPF_ALU | op | BPF_X, 0),
                stmt(BPF_RET | BPF_K, 99),
            ]);
            assert_eq!(interpret(&p, &[]), 0);
        }
    }

    #[test]
    fn jumps() {
        // Each test: A = a, compare with k (or X = k), return 1 when taken and 2 when not.
        let tests: [(u16, u32, u32, bool); 8] = [
            (BPF_JEQ, 5, 5, true),
            (BPF_JEQ, 5, 6, false),
            (BPF_JGT, 6, 5, true),
            (BPF_JGT, 5, 5, false),
            (BPF_JGE, 5, 5, true),
            (BPF_JGE, 4, 5, false),
            (BPF_JSET, 0b1010, 0b0010, true),
            (BPF_JSET, 0b1010, 0b0101, false),
        ];
        for (test, a, operand, taken) in tests {
            let expected = if taken { 1 } else { 2 };
            let with_k = program(&[
                stmt(BPF_LD | BPF_W | BPF_IMM, a),
                jump(BPF_JMP | test | BPF_K, operand, 0, 1),
                stmt(BPF_RET | BPF_K, 1),
                stmt(BPF_RET | BPF_K, 2),
            ]);
            assert_eq!(interpret(&with_k, &[]), expected, "test {test:#x} K");
            let with_x = program(&[
                stmt(BPF_LD | BPF_W | BPF_IMM, a),
                stmt(BPF_LDX | BPF_W | BPF_IMM, operand),
                jump(BPF_JMP | test | BPF_X, 0, 0, 1),
                stmt(BPF_RET | BPF_K, 1),
                stmt(BPF_RET | BPF_K, 2),
            ]);
            assert_eq!(interpret(&with_x, &[]), expected, "test {test:#x} X");
        }
        let ja = program(&[
            stmt(BPF_JMP | BPF_JA, 1),
            stmt(BPF_RET | BPF_K, 1),
            stmt(BPF_RET | BPF_K, 2),
        ]);
        assert_eq!(interpret(&ja, &[]), 2);
    }

    #[test]
    fn registers_start_at_zero() {
        let p = program(&[
            stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
            stmt(BPF_LDX | BPF_W | BPF_MEM, 7),
            stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
            stmt(BPF_ALU | BPF_ADD | BPF_K, 1),
            RET_A,
        ]);
        assert_eq!(interpret(&p, &[]), 1);
    }

    #[test]
    fn ancillary_loads_are_unsupported() {
        // SKF_AD_OFF + SKF_AD_PROTOCOL: needs skb metadata.
        let p = program(&[
            stmt(BPF_LD | BPF_H | BPF_ABS, 0xffff_f000),
            stmt(BPF_RET | BPF_K, 1),
        ]);
        assert_eq!(interpret(&p, &[0u8; 64]), 0);
    }
}
