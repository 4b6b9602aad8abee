//! Placeholder: the streaming merge of capture files lands here.
