//! `digits data fetch|verify|info`.

use anyhow::{bail, Result};
use clap::Subcommand;
use digits_data::DataDir;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download the files that are missing or damaged, verifying each.
    Fetch {
        /// Base URL to download from instead of the public mirrors (repeatable).
        #[arg(long)]
        mirror: Vec<String>,
    },
    /// Check every file's SHA-256 and structure.
    Verify,
    /// Show where the data is and what it holds.
    Info,
}

pub fn run(cmd: DataCommand, dir: DataDir) -> Result<()> {
    match cmd {
        DataCommand::Fetch { mirror } => {
            let mirrors = (!mirror.is_empty()).then_some(mirror);
            let fetched = dir.fetch(mirrors.as_deref(), true)?;
            if fetched.is_empty() {
                println!(
                    "all MNIST files already present and verified in {}",
                    dir.path.display()
                );
            } else {
                println!(
                    "downloaded and verified {} into {}",
                    fetched.join(", "),
                    dir.path.display()
                );
            }
            Ok(())
        }
        DataCommand::Verify => {
            let mut bad = 0;
            for s in dir.verify() {
                match &s.result {
                    Ok(n) => println!(
                        "ok       {:26} {n:>6} items  {}",
                        s.name,
                        s.path
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("FAILED   {:26} {e}", s.name);
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of 4 MNIST files failed verification");
            }
            Ok(())
        }
        DataCommand::Info => {
            println!("data folder: {}", dir.path.display());
            let m = dir.load()?;
            let counts = |labels: &[u8]| {
                let mut c = [0usize; 10];
                labels.iter().for_each(|&l| c[l as usize] += 1);
                c.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "train: {} images, 28x28, per digit 0-9: {}",
                m.train.len(),
                counts(&m.train.labels)
            );
            println!(
                "test:  {} images, 28x28, per digit 0-9: {}",
                m.test.len(),
                counts(&m.test.labels)
            );
            println!("checksums: verified (SHA-256 of the decompressed files)");
            Ok(())
        }
    }
}
