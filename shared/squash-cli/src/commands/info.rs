//! `squash info`: an index's description as JSON.

use super::{open_index, Result};

/// `squash info`: prints an index's description as JSON.
pub fn run(index: &str) -> Result<()> {
    println!("{:#}", open_index(index)?.describe());
    Ok(())
}
