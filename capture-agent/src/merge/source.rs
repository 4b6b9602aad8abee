//! Where a merge input's bytes come from: one stream (a file, an HTTP body), or the files of a
//! rotated capture (FILE-000001, FILE-000002, ...) read one after the other as one input.
//!
//! A chain is not a concatenation of bytes: classic pcap files cannot be concatenated (a second
//! file header would read as a packet), so the reader is told where each file starts and reads
//! its header. Files are opened only when reached, so a long series holds one descriptor.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// One file of an input.
pub struct InputFile {
    /// How errors name this file, e.g. its path; empty for an input that is a single stream.
    pub label: String,
    pub reader: Box<dyn Read + Send>,
}

type Files = Box<dyn Iterator<Item = io::Result<InputFile>> + Send>;

/// The files of one input, in the order they are read.
pub struct ChainedInput {
    files: Files,
}

impl ChainedInput {
    /// A single stream.
    pub fn single(reader: impl Read + Send + 'static) -> ChainedInput {
        let file = InputFile {
            label: String::new(),
            reader: Box::new(reader),
        };
        ChainedInput {
            files: Box::new(std::iter::once(Ok(file))),
        }
    }

    /// Files on disk, each opened when the previous one is done.
    pub fn paths(paths: Vec<PathBuf>) -> ChainedInput {
        let files = paths.into_iter().map(|path| {
            let label = path.display().to_string();
            let file = File::open(&path).map_err(|error| {
                io::Error::new(error.kind(), format!("opening {label}: {error}"))
            })?;
            Ok(InputFile {
                label,
                reader: Box::new(file),
            })
        });
        ChainedInput {
            files: Box::new(files),
        }
    }

    /// Streams produced one at a time, e.g. HTTP bodies requested as they are needed.
    pub fn files<I>(files: I) -> ChainedInput
    where
        I: IntoIterator<Item = io::Result<InputFile>>,
        I::IntoIter: Send + 'static,
    {
        ChainedInput {
            files: Box::new(files.into_iter()),
        }
    }

    pub(super) fn next_file(&mut self) -> Option<io::Result<InputFile>> {
        self.files.next()
    }
}

/// One input of a merge: what one pod interface (or one capture) recorded.
pub struct MergeInput {
    /// How errors and the report name this input, e.g. "shop/web-1 on node-a".
    pub name: String,
    pub files: ChainedInput,
    /// Replaces the `if_description` of every interface of this input in the merged file,
    /// e.g. "shop/web-1 on node-a"; `None` keeps each interface's own.
    pub description: Option<String>,
}

impl MergeInput {
    /// An input that is one stream.
    pub fn new(name: impl Into<String>, reader: impl Read + Send + 'static) -> MergeInput {
        MergeInput::chained(name, ChainedInput::single(reader))
    }

    /// An input made of several files read in order (a rotated capture).
    pub fn chained(name: impl Into<String>, files: ChainedInput) -> MergeInput {
        MergeInput {
            name: name.into(),
            files,
            description: None,
        }
    }

    pub fn with_description(mut self, description: impl Into<String>) -> MergeInput {
        self.description = Some(description.into());
        self
    }
}
