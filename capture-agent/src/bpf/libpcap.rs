//! pcap-filter(7) expressions (`bpfFilter`, `capture-agent capture --bpf`): compiled by libpcap
//! inside this process and joined with podcap's own program into the one classic BPF program the
//! kernel runs on the socket.
//!
//! **Compiling.** `pcap_compile` with the optimizer on, on a dead DLT_EN10MB handle, through the
//! `pcap` crate: libpcap is linked into the binary and given the text as a C string. No shell
//! and no command line ever see the expression, so `-z /x` or `$(reboot)` are only words libpcap
//! refuses. Before that, the text must pass [`bpf_filter_problem`] (at most 1024 characters, no
//! control characters), the same rule the API applies. Like tcpdump, libpcap resolves names it
//! is given (`host db.example`, `port https`) with the process's resolver and `/etc/services`.
//! It runs on a thread of its own with a large stack (libpcap's parser and optimizer recurse),
//! one compile at a time (older libpcaps kept the parser's state in globals; compiles are rare).
//!
//! **What the combined program means.** A frame is kept when podcap's filter rules keep it
//! **and** the expression matches it:
//!
//! - podcap's program runs first, unchanged but for its accepts: each `ret #snap` becomes a `ja`
//!   to the expression's first instruction. One instruction replaces one, so no other offset
//!   moves and no 8-bit conditional jump has to be repaired; `ja` has a 32-bit offset. Its
//!   rejects stay `ret #0`, so the expression never sees a frame the rules rejected.
//! - The expression's block starts with `ld #0; ldx #0`, so it runs exactly as it would alone
//!   (the kernel zeroes A and X before every classic program; libpcap's code writes each scratch
//!   word before reading it, as the kernel's checker demands, so nothing podcap's part leaves
//!   there matters). Without rules the program is the expression alone, and without an
//!   expression it is podcap's alone.
//! - **Snap length.** libpcap's accepts return its handle's snap length, and the `pcap` crate's
//!   dead handle fixes that at 65535 (it offers no way to pass another). The snap length only
//!   ever appears in those returns, so every non-zero return of the expression is set to the
//!   capture's snap length: the program is the one `pcap_open_dead(DLT_EN10MB, snap)` compiles
//!   (`tests/bpf_expression.rs` compares it with `tcpdump -s SNAP -dd`), and the expression never
//!   keeps more of a frame than the capture asked for.
//! - **Truncated frames**: a load past the end of the frame rejects it, in either part, as in
//!   libpcap.
//! - **VLAN.** The expression is compiled for the bytes the filter sees, not with the kernel's
//!   VLAN metadata: a dead handle does not use the ancillary loads (`SKF_AD_VLAN_TAG*`) that
//!   tcpdump's live Linux handle uses for `vlan`. The kernel has usually removed a frame's outer
//!   tag before the filter runs (the file gets it back), so `udp port 53` also matches a frame
//!   whose only tag was stripped, and `vlan` matches only a tag still inline in the frame (the
//!   inner tag of a QinQ frame, or a tag the device left in place). podcap's own rules skip up to
//!   two inline tags themselves (see `codegen`); the expression sees the frame from its first byte.
//! - At most 4096 instructions in all, the kernel's limit; past it the error says how many each
//!   part needs.
//!
//! pcapng's `if_filter` gets [`describe`]: the expression and the rules' libpcap expression,
//! `(EXPRESSION) and (RULES)`, the expression first because libpcap's `vlan` shifts the offsets
//! of everything after it and the rules' text contains `vlan`.

use std::sync::Mutex;

use capture_spec::capture::bpf_filter_problem;
use capture_spec::Filter;

use super::codegen::compile;
use super::program::{Op, BPF_IMM, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_RET, BPF_W};
use super::{BpfError, Instruction, Program, MAX_INSTRUCTIONS};

/// libpcap's parser and optimizer recurse over the expression; 1024 characters need far less
/// than this, which is only reserved, not committed.
const COMPILER_STACK: usize = 64 << 20;

/// One compile at a time: older libpcaps kept the parser's state in globals.
static COMPILER: Mutex<()> = Mutex::new(());

/// Why an expression could not become (part of) a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// Too long or not one line: [`bpf_filter_problem`]'s message.
    #[error("{0}")]
    Text(String),
    #[error(
        "libpcap cannot compile the expression: {0}: write a pcap-filter(7) expression as \
         tcpdump takes it, e.g. \"tcp port 443 and net 10.0.0.0/8\""
    )]
    Libpcap(String),
    #[error(
        "the filter rules and the expression together need {total} BPF instructions ({rules} for \
         the rules, {expression} for the expression) but the kernel accepts at most 4096: \
         simplify the expression (e.g. one net instead of many hosts) or use fewer rules"
    )]
    TooLong {
        total: usize,
        rules: usize,
        expression: usize,
    },
    #[error(transparent)]
    Rules(#[from] BpfError),
    #[error(
        "internal error reading libpcap's program: {0}; please report it with the expression used"
    )]
    Unreadable(String),
}

/// The one program for `filter` AND `expression`, accepting with `snap_length` (see the module
/// documentation). `None` or a blank expression gives podcap's program alone.
pub fn compile_with_expression(
    filter: &Filter,
    expression: Option<&str>,
    snap_length: u32,
) -> Result<Program, ExpressionError> {
    let rules = compile(filter, snap_length)?;
    let Some(text) = expression.filter(|text| !text.trim().is_empty()) else {
        return Ok(rules);
    };
    let expression = with_snap_length(libpcap_compile(text)?, snap_length);
    combine(&rules, expression, snap_length)
}

/// `rules` with each accept turned into a jump to `expression`, which follows it.
fn combine(
    rules: &Program,
    expression: Vec<Instruction>,
    snap_length: u32,
) -> Result<Program, ExpressionError> {
    if *rules == Program::accept_all(snap_length) {
        return Ok(Program::new(expression)?);
    }
    let start = rules.instructions().len();
    // A and X as the kernel leaves them before a program, so the expression runs as if alone.
    let reset = [
        Instruction::stmt(BPF_LD | BPF_W | BPF_IMM, 0),
        Instruction::stmt(BPF_LDX | BPF_W | BPF_IMM, 0),
    ];
    let total = start + reset.len() + expression.len();
    if total > MAX_INSTRUCTIONS {
        return Err(ExpressionError::TooLong {
            total,
            rules: start,
            expression: reset.len() + expression.len(),
        });
    }
    let mut combined = Vec::with_capacity(total);
    for (index, instruction) in rules.instructions().iter().enumerate() {
        combined.push(match Op::decode(instruction.code) {
            Some(Op::RetK) if instruction.k != 0 => {
                // `ja k` lands on index + 1 + k; `start` is the expression's first instruction.
                let offset = u32::try_from(start - index - 1)
                    .map_err(|_| BpfError::Internal("ja offset does not fit 32 bits".into()))?;
                Instruction::stmt(BPF_JMP | BPF_JA, offset)
            }
            Some(Op::RetA) => {
                return Err(BpfError::Internal("the rules' program returns A".into()).into())
            }
            _ => *instruction,
        });
    }
    combined.extend(reset);
    combined.extend(expression);
    Ok(Program::new(combined)?)
}

/// The filter as pcapng's `if_filter` shows it: the expression and the rules as one libpcap
/// expression; empty when the capture keeps every packet.
pub fn describe(filter: &Filter, expression: Option<&str>) -> String {
    let rules = if filter.keeps_everything() {
        None
    } else {
        Some(filter.to_pcap_expression())
    };
    let expression = expression.map(str::trim).filter(|text| !text.is_empty());
    match (expression, rules) {
        (None, None) => String::new(),
        (None, Some(rules)) => rules,
        (Some(expression), None) => expression.to_string(),
        (Some(expression), Some(rules)) => format!("({expression}) and ({rules})"),
    }
}

/// `pcap_compile` of `text` on a dead Ethernet handle, optimized, as instructions. Refuses a
/// program podcap could not combine or run the same way everywhere: one returning A, or reading
/// kernel metadata (negative offsets), which a dead handle never produces.
fn libpcap_compile(text: &str) -> Result<Vec<Instruction>, ExpressionError> {
    if let Some(problem) = bpf_filter_problem(text) {
        return Err(ExpressionError::Text(problem));
    }
    let owned = text.to_string();
    let listing = std::thread::Builder::new()
        .name("libpcap-compile".into())
        .stack_size(COMPILER_STACK)
        .spawn(move || {
            let _one_at_a_time = COMPILER
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let handle = pcap::Capture::dead(pcap::Linktype::ETHERNET)
                .map_err(|e| ExpressionError::Libpcap(libpcap_message(e)))?;
            let program = handle
                .compile(&owned, true)
                .map_err(|e| ExpressionError::Libpcap(libpcap_message(e)))?;
            // The pcap crate shows an instruction's fields only through Display
            // (`code jt jf k`, decimal); it has no accessor that needs no `unsafe`.
            Ok::<_, ExpressionError>(
                program
                    .get_instructions()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
        })
        .map_err(|e| ExpressionError::Unreadable(format!("starting the compiler thread: {e}")))?
        .join()
        .map_err(|_| ExpressionError::Unreadable("the compiler thread panicked".into()))??;
    let instructions = listing
        .iter()
        .map(|line| parse_instruction(line))
        .collect::<Result<Vec<_>, _>>()?;
    for instruction in &instructions {
        match Op::decode(instruction.code) {
            Some(Op::RetA) => {
                return Err(ExpressionError::Unreadable(
                    "libpcap's program returns A".into(),
                ))
            }
            Some(Op::LdAbs(_) | Op::LdInd(_)) if instruction.k >= 0x8000_0000 => {
                return Err(ExpressionError::Unreadable(
                    "libpcap's program reads kernel metadata".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(instructions)
}

/// libpcap's own words, without the crate's "libpcap error: " prefix.
fn libpcap_message(error: pcap::Error) -> String {
    match error {
        pcap::Error::PcapError(message) => message,
        other => other.to_string(),
    }
}

/// One instruction from the pcap crate's `code jt jf k`.
fn parse_instruction(line: &str) -> Result<Instruction, ExpressionError> {
    let unreadable = || ExpressionError::Unreadable(format!("instruction {line:?}"));
    let mut fields = line.split_whitespace();
    let mut next = || fields.next().ok_or_else(unreadable);
    let code = next()?.parse::<u16>().map_err(|_| unreadable())?;
    let jt = next()?.parse::<u8>().map_err(|_| unreadable())?;
    let jf = next()?.parse::<u8>().map_err(|_| unreadable())?;
    let k = next()?.parse::<u32>().map_err(|_| unreadable())?;
    if fields.next().is_some() {
        return Err(unreadable());
    }
    Ok(Instruction { code, jt, jf, k })
}

/// Every accept of the expression returns the capture's snap length (see the module
/// documentation); rejects stay 0.
fn with_snap_length(mut instructions: Vec<Instruction>, snap_length: u32) -> Vec<Instruction> {
    for instruction in &mut instructions {
        if instruction.code == BPF_RET | BPF_K && instruction.k != 0 {
            instruction.k = snap_length;
        }
    }
    instructions
}

#[cfg(test)]
mod tests {
    use super::super::interpret;
    use super::*;

    const SNAP: u32 = 262_144;

    /// Ethernet + IPv4 (IHL 5) + TCP header with `flags`, between 10.244.1.2 and `peer`.
    fn tcp(peer: [u8; 4], source: u16, destination: u16, flags: u8) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0]);
        frame.extend_from_slice(&[10, 244, 1, 2]);
        frame.extend_from_slice(&peer);
        frame.extend_from_slice(&source.to_be_bytes());
        frame.extend_from_slice(&destination.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        frame
    }

    fn udp(destination: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[10, 244, 1, 2, 10, 244, 9, 9]);
        frame.extend_from_slice(&1234u16.to_be_bytes());
        frame.extend_from_slice(&destination.to_be_bytes());
        frame.extend_from_slice(&[0, 8, 0, 0]);
        frame
    }

    fn program(rules: &[&str], expression: &str) -> Program {
        let filter = Filter::parse_cli(rules).unwrap();
        compile_with_expression(&filter, Some(expression), SNAP).unwrap()
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;

    #[test]
    fn an_expression_alone_is_libpcaps_program_with_the_capture_snap_length() {
        let syn = program(&[], "tcp[tcpflags] & tcp-syn != 0");
        assert_eq!(interpret(&syn, &tcp([10, 244, 0, 1], 1, 80, SYN)), SNAP);
        assert_eq!(interpret(&syn, &tcp([10, 244, 0, 1], 1, 80, ACK)), 0);
        assert_eq!(interpret(&syn, &udp(53)), 0);
        let short = compile_with_expression(&Filter::default(), Some("tcp"), 96).unwrap();
        assert_eq!(interpret(&short, &tcp([10, 244, 0, 1], 1, 80, ACK)), 96);
        assert!(short
            .instructions()
            .iter()
            .all(|i| i.code != BPF_RET | BPF_K || i.k == 0 || i.k == 96));
    }

    #[test]
    fn rules_and_expression_are_anded() {
        let both = program(&["tcp:80"], "net 10.244.0.0/24");
        assert_eq!(interpret(&both, &tcp([10, 244, 0, 7], 5, 80, ACK)), SNAP);
        assert_eq!(
            interpret(&both, &tcp([10, 244, 3, 7], 5, 80, ACK)),
            0,
            "the rules keep it, the expression does not"
        );
        assert_eq!(
            interpret(&both, &tcp([10, 244, 0, 7], 5, 81, ACK)),
            0,
            "the expression keeps it, the rules do not"
        );
        let dns_syn = program(&["udp:53", "tcp:53"], "tcp[tcpflags] & tcp-syn != 0");
        assert_eq!(interpret(&dns_syn, &tcp([1, 1, 1, 1], 9, 53, SYN)), SNAP);
        assert_eq!(interpret(&dns_syn, &tcp([1, 1, 1, 1], 9, 53, ACK)), 0);
        assert_eq!(interpret(&dns_syn, &udp(53)), 0);
    }

    #[test]
    fn no_or_blank_expression_is_the_rules_alone() {
        let filter = Filter::parse_cli(&["udp:53"]).unwrap();
        let rules = compile(&filter, SNAP).unwrap();
        for expression in [None, Some(""), Some("   ")] {
            assert_eq!(
                compile_with_expression(&filter, expression, SNAP).unwrap(),
                rules
            );
        }
    }

    #[test]
    fn long_rule_programs_reach_the_expression_with_ja() {
        // A rules program well past 255 instructions: its accepts are far from the end.
        let rules: Vec<String> = (0..30)
            .map(|rule| {
                let ports: Vec<String> = (0..12)
                    .map(|range| (rule * 400 + range * 3).to_string())
                    .collect();
                format!("tcp:{}", ports.join(","))
            })
            .collect();
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let combined = program(&rules, "tcp[tcpflags] & tcp-syn != 0");
        assert!(combined.instructions().len() > 300, "{combined}");
        for rule in 0..30u16 {
            let port = rule * 400 + 33;
            assert_eq!(interpret(&combined, &tcp([9, 9, 9, 9], 1, port, SYN)), SNAP);
            assert_eq!(interpret(&combined, &tcp([9, 9, 9, 9], 1, port, ACK)), 0);
            assert_eq!(
                interpret(&combined, &tcp([9, 9, 9, 9], 1, port + 1, SYN)),
                0
            );
        }
    }

    #[test]
    fn libpcaps_refusals_keep_its_message() {
        let error = |text: &str| {
            compile_with_expression(&Filter::default(), Some(text), SNAP)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("tcp port 99999"),
            "libpcap cannot compile the expression: illegal port number 99999 > 65535: write a \
             pcap-filter(7) expression as tcpdump takes it, e.g. \"tcp port 443 and net 10.0.0.0/8\""
        );
        for hostile in ["-z /x", "; rm -rf /", "$(reboot)", "tcp port 80 `reboot`"] {
            assert!(
                error(hostile).starts_with("libpcap cannot compile the expression: "),
                "{hostile}: {}",
                error(hostile)
            );
        }
        assert!(error("tcp\nport 80").starts_with("bpfFilter contains a line break"));
        assert!(error("tcp\0").starts_with("bpfFilter contains a NUL character"));
        assert!(error(&"x".repeat(1025)).starts_with("bpfFilter is 1025 characters long"));
    }

    #[test]
    fn deep_nesting_compiles_or_is_refused_without_crashing() {
        let nested = format!("{}tcp{}", "(".repeat(500), ")".repeat(500));
        let program = compile_with_expression(&Filter::default(), Some(&nested), SNAP).unwrap();
        assert_eq!(interpret(&program, &tcp([1, 1, 1, 1], 1, 2, ACK)), SNAP);
        let unclosed = "(".repeat(1000);
        assert!(compile_with_expression(&Filter::default(), Some(&unclosed), SNAP).is_err());
    }

    #[test]
    fn too_long_together_says_how_long_each_part_is() {
        // A rules program of 3500 instructions (built directly: generating one that long takes
        // seconds) and an expression of a few hundred.
        let mut long = vec![Instruction::stmt(BPF_LD | BPF_W | BPF_IMM, 0); 3499];
        long.push(Instruction::stmt(BPF_RET | BPF_K, SNAP));
        let rules = Program::new(long).unwrap();
        let nets: Vec<String> = (0..50).map(|i| format!("net 10.{i}.0.0/16")).collect();
        let expression = with_snap_length(libpcap_compile(&nets.join(" or ")).unwrap(), SNAP);
        let expression_length = expression.len() + 2;
        let error = combine(&rules, expression, SNAP).unwrap_err();
        assert_eq!(
            error,
            ExpressionError::TooLong {
                total: 3500 + expression_length,
                rules: 3500,
                expression: expression_length
            }
        );
        assert!(
            error.to_string().ends_with(
                "but the kernel accepts at most 4096: simplify the expression (e.g. one net \
                 instead of many hosts) or use fewer rules"
            ),
            "{error}"
        );
    }

    #[test]
    fn describe_puts_the_expression_first() {
        let udp53 = Filter::parse_cli(&["udp:53"]).unwrap();
        assert_eq!(describe(&Filter::default(), None), "");
        assert_eq!(describe(&Filter::default(), Some(" tcp ")), "tcp");
        assert_eq!(describe(&udp53, None), udp53.to_pcap_expression());
        assert_eq!(
            describe(&udp53, Some("host 10.244.0.1")),
            format!("(host 10.244.0.1) and ({})", udp53.to_pcap_expression())
        );
    }

    #[test]
    fn instructions_are_read_from_the_crates_listing() {
        assert_eq!(
            parse_instruction("21 0 8 2048").unwrap(),
            Instruction {
                code: 21,
                jt: 0,
                jf: 8,
                k: 2048
            }
        );
        assert!(parse_instruction("21 0 8").is_err());
        assert!(parse_instruction("21 0 8 1 2").is_err());
        assert!(parse_instruction("x 0 8 1").is_err());
    }
}
