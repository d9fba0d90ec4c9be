//! `sectorfs completions SHELL` and `sectorfs man`: generated from the same
//! definitions as `--help`, so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), String> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "sectorfs", &mut std::io::stdout());
    Ok(())
}

/// Prints sectorfs(1) in roff on stdout, or with `dir` writes it there
/// with a page per subcommand (sectorfs-volume-add.1, ...).
pub fn man(dir: Option<&Path>) -> Result<(), String> {
    if let Some(dir) = dir {
        clap_mangen::generate_to(Cli::command(), dir)
            .map_err(|e| format!("cannot write the man pages to {}: {e}", dir.display()))?;
        println!("wrote the man pages to {}", dir.display());
        return Ok(());
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("cannot print the man page: {e}"))
}
