//! Classic BPF instructions and validated programs.
//!
//! [`Instruction`] mirrors the kernel's `struct sock_filter` field for field, so the AF_PACKET code
//! can hand a [`Program`] to `SO_ATTACH_FILTER` without translation. A [`Program`] can only be
//! built through [`Program::new`] (or the two canned programs), which applies the same static
//! checks as the kernel's `bpf_check_classic`: known opcodes, every jump forward and inside the
//! program, a `ret` at the end, scratch-memory indexes below 16, no division by a constant zero and
//! no constant shift of 32 or more. Anything that passes is therefore a program the kernel accepts,
//! and [`super::interpret`] never has to guess what an instruction means.

use std::fmt;

use super::BpfError;

/// The kernel's limit on classic BPF program length (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;

// Opcode fields, as in <linux/bpf_common.h>. Only the combinations listed in `Op::decode` are
// valid; the constants are combined with `|` exactly as in C.
pub(crate) const BPF_LD: u16 = 0x00;
pub(crate) const BPF_LDX: u16 = 0x01;
pub(crate) const BPF_ST: u16 = 0x02;
pub(crate) const BPF_STX: u16 = 0x03;
pub(crate) const BPF_ALU: u16 = 0x04;
pub(crate) const BPF_JMP: u16 = 0x05;
pub(crate) const BPF_RET: u16 = 0x06;
pub(crate) const BPF_MISC: u16 = 0x07;

pub(crate) const BPF_W: u16 = 0x00;
pub(crate) const BPF_H: u16 = 0x08;
pub(crate) const BPF_B: u16 = 0x10;

pub(crate) const BPF_IMM: u16 = 0x00;
pub(crate) const BPF_ABS: u16 = 0x20;
pub(crate) const BPF_IND: u16 = 0x40;
pub(crate) const BPF_MEM: u16 = 0x60;
pub(crate) const BPF_LEN: u16 = 0x80;
pub(crate) const BPF_MSH: u16 = 0xa0;

pub(crate) const BPF_ADD: u16 = 0x00;
pub(crate) const BPF_SUB: u16 = 0x10;
pub(crate) const BPF_MUL: u16 = 0x20;
pub(crate) const BPF_DIV: u16 = 0x30;
pub(crate) const BPF_OR: u16 = 0x40;
pub(crate) const BPF_AND: u16 = 0x50;
pub(crate) const BPF_LSH: u16 = 0x60;
pub(crate) const BPF_RSH: u16 = 0x70;
pub(crate) const BPF_NEG: u16 = 0x80;
pub(crate) const BPF_MOD: u16 = 0x90;
pub(crate) const BPF_XOR: u16 = 0xa0;

pub(crate) const BPF_JA: u16 = 0x00;
pub(crate) const BPF_JEQ: u16 = 0x10;
pub(crate) const BPF_JGT: u16 = 0x20;
pub(crate) const BPF_JGE: u16 = 0x30;
pub(crate) const BPF_JSET: u16 = 0x40;

pub(crate) const BPF_K: u16 = 0x00;
pub(crate) const BPF_X: u16 = 0x08;
/// `ret` source: the accumulator (for `BPF_RET` only).
pub(crate) const BPF_A: u16 = 0x10;

pub(crate) const BPF_TAX: u16 = 0x00;
pub(crate) const BPF_TXA: u16 = 0x80;

/// Number of 32-bit scratch memory words (`BPF_MEMWORDS`).
pub(crate) const MEMORY_WORDS: u32 = 16;

/// One classic BPF instruction, same fields and meaning as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Instruction {
    /// A non-jumping instruction (load, store, ALU, ret, tax/txa).
    pub(crate) const fn stmt(code: u16, k: u32) -> Instruction {
        Instruction {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// A conditional jump with already resolved offsets.
    pub(crate) const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
        Instruction { code, jt, jf, k }
    }
}

/// Size in bytes of a packet load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    Word,
    Half,
    Byte,
}

impl Size {
    pub(crate) fn bytes(self) -> u32 {
        match self {
            Size::Word => 4,
            Size::Half => 2,
            Size::Byte => 1,
        }
    }
}

/// ALU operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
}

/// Conditional jump tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JumpTest {
    Eq,
    Gt,
    Ge,
    Set,
}

/// Where the second operand of an ALU op or a jump comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    K,
    X,
}

/// A decoded opcode: the single place that knows which `code` values exist. Both the validator
/// and the interpreter work from this, so they cannot disagree about what an opcode means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A = packet[k .. k+size]
    LdAbs(Size),
    /// A = packet[X+k .. X+k+size]
    LdInd(Size),
    /// A = packet length
    LdLen,
    /// A = k
    LdImm,
    /// A = M[k]
    LdMem,
    /// X = k
    LdxImm,
    /// X = M[k]
    LdxMem,
    /// X = packet length
    LdxLen,
    /// X = 4 * (packet[k] & 0xf), the IPv4 header length idiom
    LdxMsh,
    /// M[k] = A
    St,
    /// M[k] = X
    Stx,
    Alu(AluOp, Source),
    /// A = -A
    Neg,
    /// pc += k
    Ja,
    Jump(JumpTest, Source),
    /// return k
    RetK,
    /// return A
    RetA,
    /// X = A
    Tax,
    /// A = X
    Txa,
}

impl Op {
    pub(crate) fn decode(code: u16) -> Option<Op> {
        let size = |code: u16| match code & 0x18 {
            BPF_W => Some(Size::Word),
            BPF_H => Some(Size::Half),
            BPF_B => Some(Size::Byte),
            _ => None,
        };
        let source = |code: u16| {
            if code & BPF_X != 0 {
                Source::X
            } else {
                Source::K
            }
        };
        // Opcodes are 8 bits in classic BPF; higher bits would be silently ignored by the masks
        // below, so refuse them outright.
        if code > 0xff {
            return None;
        }
        let class = code & 0x07;
        Some(match class {
            BPF_LD => match code & 0xe0 {
                BPF_ABS => Op::LdAbs(size(code)?),
                BPF_IND => Op::LdInd(size(code)?),
                BPF_LEN if code == BPF_LD | BPF_W | BPF_LEN => Op::LdLen,
                BPF_IMM if code == BPF_LD | BPF_W | BPF_IMM => Op::LdImm,
                BPF_MEM if code == BPF_LD | BPF_W | BPF_MEM => Op::LdMem,
                _ => return None,
            },
            BPF_LDX => match code {
                c if c == BPF_LDX | BPF_W | BPF_IMM => Op::LdxImm,
                c if c == BPF_LDX | BPF_W | BPF_MEM => Op::LdxMem,
                c if c == BPF_LDX | BPF_W | BPF_LEN => Op::LdxLen,
                c if c == BPF_LDX | BPF_B | BPF_MSH => Op::LdxMsh,
                _ => return None,
            },
            BPF_ST if code == BPF_ST => Op::St,
            BPF_STX if code == BPF_STX => Op::Stx,
            BPF_ALU => {
                if code & !0x08 & !0xf0 != BPF_ALU {
                    return None;
                }
                let op = match code & 0xf0 {
                    BPF_ADD => AluOp::Add,
                    BPF_SUB => AluOp::Sub,
                    BPF_MUL => AluOp::Mul,
                    BPF_DIV => AluOp::Div,
                    BPF_OR => AluOp::Or,
                    BPF_AND => AluOp::And,
                    BPF_LSH => AluOp::Lsh,
                    BPF_RSH => AluOp::Rsh,
                    BPF_MOD => AluOp::Mod,
                    BPF_XOR => AluOp::Xor,
                    BPF_NEG if code == BPF_ALU | BPF_NEG => return Some(Op::Neg),
                    _ => return None,
                };
                Op::Alu(op, source(code))
            }
            BPF_JMP => {
                if code & !0x08 & !0xf0 != BPF_JMP {
                    return None;
                }
                let test = match code & 0xf0 {
                    BPF_JA if code == BPF_JMP | BPF_JA => return Some(Op::Ja),
                    BPF_JEQ => JumpTest::Eq,
                    BPF_JGT => JumpTest::Gt,
                    BPF_JGE => JumpTest::Ge,
                    BPF_JSET => JumpTest::Set,
                    _ => return None,
                };
                Op::Jump(test, source(code))
            }
            BPF_RET if code == BPF_RET | BPF_K => Op::RetK,
            BPF_RET if code == BPF_RET | BPF_A => Op::RetA,
            BPF_MISC if code == BPF_MISC | BPF_TAX => Op::Tax,
            BPF_MISC if code == BPF_MISC | BPF_TXA => Op::Txa,
            _ => return None,
        })
    }
}

/// A complete, validated classic BPF program (at most 4096 instructions, all jumps forward and in
/// range, ends in ret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    instructions: Vec<Instruction>,
}

impl Program {
    /// Checks `instructions` the way the kernel does when the program is attached, so that a
    /// `Program` can always be attached. Only the generator builds programs from raw parts.
    pub(crate) fn new(instructions: Vec<Instruction>) -> Result<Program, BpfError> {
        if instructions.len() > MAX_INSTRUCTIONS {
            return Err(BpfError::TooLong {
                instructions: instructions.len(),
            });
        }
        let invalid = |index: usize, reason: &str| BpfError::Invalid {
            index,
            reason: reason.to_string(),
        };
        let Some(last) = instructions.last() else {
            return Err(invalid(0, "the program is empty"));
        };
        if !matches!(Op::decode(last.code), Some(Op::RetK | Op::RetA)) {
            return Err(invalid(
                instructions.len() - 1,
                "the last instruction must be ret",
            ));
        }
        for (index, instruction) in instructions.iter().enumerate() {
            let Some(op) = Op::decode(instruction.code) else {
                return Err(invalid(
                    index,
                    &format!("unknown opcode {:#06x}", instruction.code),
                ));
            };
            // Instructions left after this one: a jump may land on any of them, no further.
            let room = (instructions.len() - index - 1) as u64;
            match op {
                Op::Ja if u64::from(instruction.k) >= room => {
                    return Err(invalid(index, "ja jumps past the end of the program"));
                }
                Op::Jump(..) if u64::from(instruction.jt.max(instruction.jf)) >= room => {
                    return Err(invalid(
                        index,
                        "conditional jump past the end of the program",
                    ));
                }
                Op::LdMem | Op::LdxMem | Op::St | Op::Stx if instruction.k >= MEMORY_WORDS => {
                    return Err(invalid(index, "scratch memory index is 16 or more"));
                }
                Op::Alu(AluOp::Div | AluOp::Mod, Source::K) if instruction.k == 0 => {
                    return Err(invalid(index, "division by constant zero"));
                }
                Op::Alu(AluOp::Lsh | AluOp::Rsh, Source::K) if instruction.k >= 32 => {
                    return Err(invalid(index, "constant shift by 32 or more"));
                }
                _ => {}
            }
        }
        Ok(Program { instructions })
    }

    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// Accepts every packet, keeping `snap_length` bytes. (A snap length of 0 keeps nothing: the
    /// kernel reads a return value of 0 as "drop".)
    pub fn accept_all(snap_length: u32) -> Program {
        Program {
            instructions: vec![Instruction::stmt(BPF_RET | BPF_K, snap_length)],
        }
    }

    /// Returns `value` for every packet: as a fanout group's program, sends every packet to
    /// member `value` (see `afpacket::Ring::successor`).
    pub fn returning(value: u32) -> Program {
        Program {
            instructions: vec![Instruction::stmt(BPF_RET | BPF_K, value)],
        }
    }

    /// Rejects every packet (used to drain a socket before stopping).
    pub fn drop_all() -> Program {
        Program {
            instructions: vec![Instruction::stmt(BPF_RET | BPF_K, 0)],
        }
    }

    /// The most instructions any packet can execute (jumps only go forward, so this is the
    /// longest path through the program). Tests use it to bound the per-packet cost.
    #[cfg(test)]
    pub(crate) fn longest_path(&self) -> usize {
        let count = self.instructions.len();
        let mut longest = vec![0usize; count + 1];
        for index in (0..count).rev() {
            let instruction = self.instructions[index];
            let next = index + 1;
            let successors: Vec<usize> = match Op::decode(instruction.code) {
                Some(Op::RetK | Op::RetA) | None => vec![],
                Some(Op::Ja) => vec![next + instruction.k as usize],
                Some(Op::Jump(..)) => vec![
                    next + usize::from(instruction.jt),
                    next + usize::from(instruction.jf),
                ],
                Some(_) => vec![next],
            };
            longest[index] = 1 + successors
                .iter()
                .map(|&s| longest[s.min(count)])
                .max()
                .unwrap_or(0);
        }
        longest[0]
    }
}

impl fmt::Display for Program {
    /// One instruction per line in `tcpdump -d` style, for logs and for comparing with libpcap.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, instruction) in self.instructions.iter().enumerate() {
            writeln!(f, "({index:03}) {}", Listing { index, instruction })?;
        }
        Ok(())
    }
}

/// One instruction rendered like `tcpdump -d`, which needs the instruction's index to print
/// absolute jump targets.
struct Listing<'a> {
    index: usize,
    instruction: &'a Instruction,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Instruction { code, jt, jf, k } = *self.instruction;
        let next = self.index + 1;
        let width = |s: &str| format!("{s:<8}");
        let size = |s: Size| match s {
            Size::Word => "ld",
            Size::Half => "ldh",
            Size::Byte => "ldb",
        };
        let Some(op) = Op::decode(code) else {
            return write!(
                f,
                "{}code {code:#06x} jt {jt} jf {jf} k {k}",
                width("unknown")
            );
        };
        match op {
            Op::LdAbs(s) => write!(f, "{} [{k}]", width(size(s))),
            Op::LdInd(s) => write!(f, "{} [x + {k}]", width(size(s))),
            Op::LdLen => write!(f, "{} #pktlen", width("ld")),
            Op::LdImm => write!(f, "{} #{k:#x}", width("ld")),
            Op::LdMem => write!(f, "{} M[{k}]", width("ld")),
            Op::LdxImm => write!(f, "{} #{k:#x}", width("ldx")),
            Op::LdxMem => write!(f, "{} M[{k}]", width("ldx")),
            Op::LdxLen => write!(f, "{} #pktlen", width("ldx")),
            Op::LdxMsh => write!(f, "{} 4*([{k}]&0xf)", width("ldxb")),
            Op::St => write!(f, "{} M[{k}]", width("st")),
            Op::Stx => write!(f, "{} M[{k}]", width("stx")),
            Op::Alu(alu, source) => {
                let name = match alu {
                    AluOp::Add => "add",
                    AluOp::Sub => "sub",
                    AluOp::Mul => "mul",
                    AluOp::Div => "div",
                    AluOp::Or => "or",
                    AluOp::And => "and",
                    AluOp::Lsh => "lsh",
                    AluOp::Rsh => "rsh",
                    AluOp::Mod => "mod",
                    AluOp::Xor => "xor",
                };
                match source {
                    Source::K => write!(f, "{} #{k:#x}", width(name)),
                    Source::X => write!(f, "{} x", width(name)),
                }
            }
            Op::Neg => f.write_str("neg"),
            Op::Ja => write!(f, "{} {}", width("ja"), next as u64 + u64::from(k)),
            Op::Jump(test, source) => {
                let name = match test {
                    JumpTest::Eq => "jeq",
                    JumpTest::Gt => "jgt",
                    JumpTest::Ge => "jge",
                    JumpTest::Set => "jset",
                };
                let operand = match source {
                    Source::K => format!("#{k:#x}"),
                    Source::X => "x".to_string(),
                };
                write!(
                    f,
                    "{} {operand:<16} jt {}\tjf {}",
                    width(name),
                    next + usize::from(jt),
                    next + usize::from(jf)
                )
            }
            Op::RetK => write!(f, "{} #{k}", width("ret")),
            Op::RetA => f.write_str("ret      a"),
            Op::Tax => f.write_str("tax"),
            Op::Txa => f.write_str("txa"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_programs_are_single_returns() {
        assert_eq!(
            Program::accept_all(1500).instructions(),
            &[Instruction::stmt(BPF_RET | BPF_K, 1500)]
        );
        assert_eq!(
            Program::drop_all().instructions(),
            &[Instruction::stmt(BPF_RET | BPF_K, 0)]
        );
    }

    #[test]
    fn every_valid_opcode_decodes_and_nothing_else_does() {
        let mut valid = 0;
        for code in 0..=u16::MAX {
            if Op::decode(code).is_some() {
                valid += 1;
            }
        }
        // ld: 3 sizes x (abs, ind) + len + imm + mem = 9; ldx: 4; st, stx: 2;
        // alu: 10 ops x 2 sources + neg = 21; jmp: ja + 4 tests x 2 sources = 9; ret: 2; misc: 2.
        assert_eq!(valid, 9 + 4 + 2 + 21 + 9 + 2 + 2);
    }

    #[test]
    fn validation_rejects_what_the_kernel_rejects() {
        let ret = Instruction::stmt(BPF_RET | BPF_K, 0);
        let reason = |instructions: Vec<Instruction>| match Program::new(instructions) {
            Err(BpfError::Invalid { reason, .. }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(reason(vec![]).contains("empty"));
        assert!(reason(vec![Instruction::stmt(BPF_LD | BPF_H | BPF_ABS, 12)]).contains("ret"));
        assert!(reason(vec![
            Instruction::jump(BPF_JMP | BPF_JEQ | BPF_K, 1, 1, 0),
            ret
        ])
        .contains("past the end"));
        assert!(reason(vec![Instruction::stmt(BPF_JMP | BPF_JA, 1), ret]).contains("past the end"));
        assert!(reason(vec![Instruction::stmt(BPF_ST, 16), ret]).contains("memory"));
        assert!(
            reason(vec![Instruction::stmt(BPF_ALU | BPF_DIV | BPF_K, 0), ret]).contains("zero")
        );
        assert!(
            reason(vec![Instruction::stmt(BPF_ALU | BPF_LSH | BPF_K, 32), ret]).contains("shift")
        );
        assert!(reason(vec![Instruction::stmt(0xffff, 0), ret]).contains("unknown opcode"));
        assert!(matches!(
            Program::new(vec![ret; MAX_INSTRUCTIONS + 1]),
            Err(BpfError::TooLong { instructions: 4097 })
        ));
        assert!(Program::new(vec![ret; MAX_INSTRUCTIONS]).is_ok());
        assert!(Program::new(vec![
            Instruction::jump(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0),
            ret
        ])
        .is_ok());
    }

    #[test]
    fn listing_looks_like_tcpdump() {
        let program = Program::new(vec![
            Instruction::stmt(BPF_LD | BPF_H | BPF_ABS, 12),
            Instruction::jump(BPF_JMP | BPF_JEQ | BPF_K, 0x800, 0, 1),
            Instruction::stmt(BPF_RET | BPF_K, 262_144),
            Instruction::stmt(BPF_RET | BPF_K, 0),
        ])
        .unwrap();
        let text = program.to_string();
        assert_eq!(
            text,
            "(000) ldh      [12]\n(001) jeq      #0x800           jt 2\tjf 3\n(002) ret      #262144\n(003) ret      #0\n"
        );
    }
}
