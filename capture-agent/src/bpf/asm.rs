//! A small assembler for classic BPF with symbolic labels and long-jump repair.
//!
//! The code generator writes jumps to labels and never counts instructions. Classic BPF
//! conditional jumps have 8-bit offsets, so a big filter (many rules and ranges) has jumps to the
//! shared accept/reject that are too long to encode. [`Assembler::finish`] repairs each of them by
//! sending it to a nearby *island* instead: a copy of the target when the target is a `ret` (one
//! instruction, and the packet is decided one jump sooner), or a `ja` to the target otherwise
//! (`ja` has a 32-bit offset). Islands are only placed where no instruction falls through into
//! them (right after a jump or a `ret`), and one island serves every later jump that can reach it,
//! so a long program pays a few instructions for this, not one per jump.
//!
//! Conditional jumps name a label for *both* outcomes; to "fall through" the generator binds a
//! label right after the jump. That is what makes every conditional jump a safe place for an
//! island: inserting an instruction after it moves the label and the jump's target together.

use super::program::{Instruction, Op, BPF_JA, BPF_JMP, MAX_INSTRUCTIONS};
use super::BpfError;

/// The longest forward distance a conditional jump can encode.
const MAX_SHORT_JUMP: usize = u8::MAX as usize;

/// A position in the program, defined by [`Assembler::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(usize);

#[derive(Debug, Clone)]
enum Item {
    /// An instruction that never jumps: loads, stores, ALU, `tax`/`txa`, `ret`.
    Plain(Instruction),
    /// A conditional jump (`code` includes class, test and source).
    Cond {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    /// An unconditional jump.
    Ja(Label),
    /// Binds a label to the next instruction.
    Bind(Label),
}

impl Item {
    /// Whether execution can continue with the following instruction. Islands may only be put
    /// after items that cannot; a conditional jump cannot because both its outcomes are labels.
    fn falls_through(&self) -> bool {
        match self {
            Item::Plain(instruction) => {
                !matches!(Op::decode(instruction.code), Some(Op::RetK | Op::RetA))
            }
            Item::Cond { .. } | Item::Ja(_) => false,
            Item::Bind(_) => true,
        }
    }

    fn is_instruction(&self) -> bool {
        !matches!(self, Item::Bind(_))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Assembler {
    items: Vec<Item>,
    labels: usize,
}

impl Assembler {
    pub(crate) fn new() -> Assembler {
        Assembler::default()
    }

    pub(crate) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub(crate) fn bind(&mut self, label: Label) {
        self.items.push(Item::Bind(label));
    }

    /// A non-jumping instruction.
    pub(crate) fn emit(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(Instruction::stmt(code, k)));
    }

    /// A conditional jump: to `jt` when the test holds, else to `jf`.
    pub(crate) fn branch(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Cond { code, k, jt, jf });
    }

    /// A conditional jump to `target` when the test holds; otherwise continue with what follows.
    pub(crate) fn jump_if(&mut self, code: u16, k: u32, target: Label) {
        let next = self.label();
        self.branch(code, k, target, next);
        self.bind(next);
    }

    /// A conditional jump to `target` when the test does not hold; otherwise continue.
    pub(crate) fn jump_unless(&mut self, code: u16, k: u32, target: Label) {
        let next = self.label();
        self.branch(code, k, next, target);
        self.bind(next);
    }

    pub(crate) fn ja(&mut self, target: Label) {
        self.items.push(Item::Ja(target));
    }

    /// Number of instructions emitted so far (labels take no room).
    pub(crate) fn len(&self) -> usize {
        self.items
            .iter()
            .filter(|item| item.is_instruction())
            .count()
    }

    /// Resolves labels into offsets, repairing jumps that are too long, and returns the
    /// instructions. Fails with [`BpfError::TooLong`] past the kernel's limit.
    pub(crate) fn finish(mut self) -> Result<Vec<Instruction>, BpfError> {
        self.drop_jumps_to_next();
        loop {
            let length = self.len();
            if length > MAX_INSTRUCTIONS {
                return Err(BpfError::TooLong {
                    instructions: length,
                });
            }
            let layout = self.layout()?;
            match self.first_long_jump(&layout)? {
                None => return self.encode(&layout),
                Some((item, outcome)) => self.repair(&layout, item, outcome)?,
            }
        }
    }

    /// Removes `ja` to the very next instruction, which the generator produces when a block that
    /// must continue elsewhere happens to be laid out right before its continuation.
    fn drop_jumps_to_next(&mut self) {
        let mut keep = vec![true; self.items.len()];
        for (index, item) in self.items.iter().enumerate() {
            if let Item::Ja(target) = item {
                let lands_next = self.items[index + 1..]
                    .iter()
                    .take_while(|later| !later.is_instruction())
                    .any(|later| matches!(later, Item::Bind(label) if label == target));
                keep[index] = !lands_next;
            }
        }
        let mut flags = keep.into_iter();
        self.items.retain(|_| flags.next().unwrap_or(true));
    }

    /// Instruction index of every item, and of every label.
    fn layout(&self) -> Result<Layout, BpfError> {
        let mut positions = Vec::with_capacity(self.items.len());
        let mut labels = vec![None; self.labels];
        let mut next = 0usize;
        for item in &self.items {
            positions.push(next);
            match item {
                Item::Bind(label) => {
                    let slot = labels
                        .get_mut(label.0)
                        .ok_or_else(|| internal("label out of range"))?;
                    if slot.is_some() {
                        return Err(internal("label bound twice"));
                    }
                    *slot = Some(next);
                }
                _ => next += 1,
            }
        }
        let labels = labels
            .into_iter()
            .map(|position| position.ok_or_else(|| internal("label never bound")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layout { positions, labels })
    }

    /// The first conditional jump (item index, and whether its true or false outcome) whose
    /// target is too far for 8 bits.
    fn first_long_jump(&self, layout: &Layout) -> Result<Option<(usize, bool)>, BpfError> {
        for (index, item) in self.items.iter().enumerate() {
            if let Item::Cond { jt, jf, .. } = item {
                for (outcome, label) in [(true, jt), (false, jf)] {
                    if layout.offset(index, *label)? > MAX_SHORT_JUMP {
                        return Ok(Some((index, outcome)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Points the `outcome` of the conditional jump at item `index` to an island within reach:
    /// an existing one if possible, else a new one placed as far ahead as reachable so that it
    /// can serve later jumps too.
    fn repair(&mut self, layout: &Layout, index: usize, outcome: bool) -> Result<(), BpfError> {
        let Item::Cond { jt, jf, .. } = self.items[index] else {
            return Err(internal(
                "repairing something that is not a conditional jump",
            ));
        };
        let target = if outcome { jt } else { jf };
        let target_position = layout.labels[target.0];
        let jump_position = layout.positions[index];
        let reach = jump_position + 1 + MAX_SHORT_JUMP;
        let target_item = self.instruction_at(target_position);
        // What an island for this target looks like: a copy of a `ret`, or a `ja`.
        let island = match target_item {
            Some(Item::Plain(instruction)) if !Item::Plain(instruction).falls_through() => {
                Item::Plain(instruction)
            }
            _ => Item::Ja(target),
        };

        // An existing equivalent instruction within reach: the farthest one.
        let existing = (index + 1..self.items.len())
            .take_while(|&i| layout.positions[i] <= reach)
            .filter(|&i| match (&self.items[i], &island) {
                (Item::Plain(a), Item::Plain(b)) => a == b,
                (Item::Ja(a), Item::Ja(_)) => layout.labels[a.0] == target_position,
                _ => false,
            })
            .last();
        let new_label = self.label();
        if let Some(i) = existing {
            self.items.insert(i, Item::Bind(new_label));
        } else {
            // The farthest item after which nothing falls through; the jump itself always
            // qualifies. The island goes right after it, before any labels bound there, so those
            // labels keep naming the instruction they named.
            let after = (index..self.items.len())
                .take_while(|&i| layout.positions[i] < reach)
                .filter(|&i| self.items[i].is_instruction() && !self.items[i].falls_through())
                .last()
                .ok_or_else(|| internal("no place for an island"))?;
            self.items.insert(after + 1, Item::Bind(new_label));
            self.items.insert(after + 2, island);
        }
        // `index` is unchanged: both insertions are after it.
        if let Item::Cond { jt, jf, .. } = &mut self.items[index] {
            if outcome {
                *jt = new_label;
            } else {
                *jf = new_label;
            }
        }
        Ok(())
    }

    /// The item that occupies instruction index `position`.
    fn instruction_at(&self, position: usize) -> Option<Item> {
        self.items
            .iter()
            .filter(|item| item.is_instruction())
            .nth(position)
            .cloned()
    }

    fn encode(&self, layout: &Layout) -> Result<Vec<Instruction>, BpfError> {
        let mut out = Vec::with_capacity(self.len());
        for (index, item) in self.items.iter().enumerate() {
            match item {
                Item::Plain(instruction) => out.push(*instruction),
                Item::Cond { code, k, jt, jf } => {
                    let short = |label: Label| {
                        u8::try_from(layout.offset(index, label)?)
                            .map_err(|_| internal("long jump left unrepaired"))
                    };
                    out.push(Instruction::jump(*code, *k, short(*jt)?, short(*jf)?));
                }
                Item::Ja(target) => {
                    let offset = u32::try_from(layout.offset(index, *target)?)
                        .map_err(|_| internal("ja offset does not fit 32 bits"))?;
                    out.push(Instruction::stmt(BPF_JMP | BPF_JA, offset));
                }
                Item::Bind(_) => {}
            }
        }
        Ok(out)
    }
}

struct Layout {
    /// Instruction index of each item (for a label binding: of the instruction it names).
    positions: Vec<usize>,
    /// Instruction index each label names.
    labels: Vec<usize>,
}

impl Layout {
    /// The encoded offset from the jump at item `index` to `label`: instructions skipped.
    fn offset(&self, index: usize, label: Label) -> Result<usize, BpfError> {
        let from = self.positions[index] + 1;
        let to = self
            .labels
            .get(label.0)
            .copied()
            .ok_or_else(|| internal("label out of range"))?;
        to.checked_sub(from)
            .ok_or_else(|| internal("backward jump"))
    }
}

fn internal(reason: &str) -> BpfError {
    BpfError::Internal(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::interpret;
    use super::super::program::*;
    use super::*;

    const RET_K: u16 = BPF_RET | BPF_K;
    const JEQ: u16 = BPF_JMP | BPF_JEQ | BPF_K;

    #[test]
    fn labels_resolve_and_jumps_to_next_vanish() {
        let mut asm = Assembler::new();
        let yes = asm.label();
        let no = asm.label();
        let middle = asm.label();
        asm.emit(BPF_LD | BPF_B | BPF_ABS, 0);
        asm.branch(JEQ, 1, yes, middle);
        asm.bind(middle);
        asm.jump_unless(JEQ, 2, no);
        asm.ja(yes);
        asm.bind(yes);
        asm.emit(RET_K, 100);
        asm.bind(no);
        asm.emit(RET_K, 0);
        let code = asm.finish().unwrap();
        assert_eq!(
            code,
            vec![
                Instruction::stmt(BPF_LD | BPF_B | BPF_ABS, 0),
                Instruction::jump(JEQ, 1, 1, 0),
                Instruction::jump(JEQ, 2, 0, 1),
                Instruction::stmt(RET_K, 100),
                Instruction::stmt(RET_K, 0),
            ]
        );
    }

    #[test]
    fn unbound_and_backward_labels_are_internal_errors() {
        let mut asm = Assembler::new();
        let nowhere = asm.label();
        asm.ja(nowhere);
        asm.emit(RET_K, 0);
        assert!(matches!(asm.finish(), Err(BpfError::Internal(_))));

        let mut asm = Assembler::new();
        let start = asm.label();
        asm.bind(start);
        asm.emit(BPF_LD | BPF_B | BPF_ABS, 0);
        asm.ja(start);
        asm.emit(RET_K, 0);
        assert!(matches!(asm.finish(), Err(BpfError::Internal(_))));
    }

    /// A chain of `count` byte tests, each jumping to a shared accept at the very end: every jump
    /// but the last few is too long. Returns the program and the byte value each test matches.
    fn long_chain(count: u32, accept_is_ret: bool) -> Program {
        let mut asm = Assembler::new();
        let accept = asm.label();
        let reject = asm.label();
        for value in 0..count {
            asm.emit(BPF_LD | BPF_W | BPF_ABS, 0);
            asm.jump_if(JEQ, value, accept);
        }
        asm.ja(reject);
        // A non-ret target: the accept block does some work first, so islands must be `ja`.
        asm.bind(accept);
        if !accept_is_ret {
            asm.emit(BPF_LD | BPF_W | BPF_IMM, 77);
            asm.emit(BPF_RET | BPF_A, 0);
        } else {
            asm.emit(RET_K, 77);
        }
        asm.bind(reject);
        asm.emit(RET_K, 0);
        Program::new(asm.finish().unwrap()).unwrap()
    }

    #[test]
    fn long_jumps_get_islands_and_keep_their_meaning() {
        for accept_is_ret in [true, false] {
            let count = 1000;
            let program = long_chain(count, accept_is_ret);
            // 2 instructions per test, plus ja/accept/reject; islands add a little.
            let length = program.instructions().len();
            assert!(length < 2 * count as usize + 30, "{length} instructions");
            for value in [0u32, 1, 127, 128, 500, 998, 999] {
                assert_eq!(
                    interpret(&program, &value.to_be_bytes()),
                    77,
                    "value {value}"
                );
            }
            for value in [1000u32, 5000, u32::MAX] {
                assert_eq!(
                    interpret(&program, &value.to_be_bytes()),
                    0,
                    "value {value}"
                );
            }
        }
    }

    #[test]
    fn too_many_instructions_is_too_long() {
        let mut asm = Assembler::new();
        for _ in 0..MAX_INSTRUCTIONS {
            asm.emit(BPF_LD | BPF_W | BPF_IMM, 0);
        }
        asm.emit(RET_K, 0);
        assert!(matches!(
            asm.finish(),
            Err(BpfError::TooLong { instructions: 4097 })
        ));
    }
}
