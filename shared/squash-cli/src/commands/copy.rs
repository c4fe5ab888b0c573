//! `squash copy`: every object of one store location to another, the manifest last.

use super::{CliError, Result};
use squash_s3::open_store;

/// Runs `squash copy`.
pub fn run(from: &str, to: &str) -> Result<()> {
    let (src, dst) = (open_store(from)?, open_store(to)?);
    let mut keys = src.list("")?;
    if keys.is_empty() {
        return Err(CliError::NotFound {
            what: format!("any object in {}", src.describe()),
        });
    }
    // The manifest last: it is what makes the copied segments visible.
    keys.sort_by_key(|k| k == squash_build::build::MANIFEST_KEY);
    let mut bytes = 0u64;
    for key in &keys {
        let data = src.get(key)?;
        bytes += data.len() as u64;
        dst.put(key, &data)?;
    }
    println!(
        "copied {} objects, {} bytes, {} -> {}",
        keys.len(),
        bytes,
        src.describe(),
        dst.describe()
    );
    Ok(())
}
