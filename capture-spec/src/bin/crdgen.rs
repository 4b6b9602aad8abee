//! crdgen: the one source of podcap's CRD YAML. Prints the PacketCapture and
//! PacketCaptureSchedule CustomResourceDefinitions generated from capture-spec's Rust types, or
//! writes them (with their kustomization.yaml) into `deploy/crds/`, where a test compares the
//! committed files with this output.
//!
//! Usage: crdgen                  print both CRDs as one multi-document YAML stream
//!        crdgen --write [DIR]    write the files into DIR (default: the repository's deploy/crds)

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use capture_spec::crd;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            let documents = crd::definitions()
                .iter()
                .map(crd::Definition::to_yaml)
                .collect::<Result<Vec<_>, _>>()?;
            print!("{}", documents.join("---\n"));
            Ok(())
        }
        Some("--write") if args.len() <= 2 => {
            // The default is found from this crate's source location, so `cargo run` works from
            // any directory of the checkout.
            let dir = match args.get(1) {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(crd::CRD_DIR),
            };
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            for (name, contents) in crd::files()? {
                let path = dir.join(&name);
                std::fs::write(&path, contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        Some(other) => bail!(
            "unexpected argument {other:?}: run `crdgen` to print the CRDs or `crdgen --write [DIR]` to write them into deploy/crds"
        ),
    }
}
