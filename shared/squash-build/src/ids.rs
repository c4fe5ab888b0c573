//! Reading ids from a file; the ids themselves are the write path's ([`squash_write::Ids`]).

use crate::error::{BuildError, Result};
use std::path::Path;

pub use squash_write::ids::{canonical_u64, parse_ids, Ids};

/// Reads ids from `path`: a `.npy` of unsigned integers, or a text file with one id per
/// line. A text file whose every line is an unsigned integer in canonical decimal
/// (`0`, `42`, no sign, no leading zero) gives integer ids; any other line makes every
/// line a string id (`007` is a string). Trailing `\r` is dropped; empty lines are errors.
pub fn read_ids(path: &Path) -> Result<Ids> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        return Ok(Ids::U64(crate::io::read_npy_u64(path)?));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| BuildError::input(path.display(), format!("cannot read: {e}")))?;
    let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if let Some(i) = lines.iter().position(|l| l.is_empty()) {
        return Err(BuildError::input(path.display(), format!("line {} is empty", i + 1)));
    }
    Ok(parse_ids(lines.into_iter()))
}
