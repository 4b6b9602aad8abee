//! Placeholder: the classic BPF generator lands here.
