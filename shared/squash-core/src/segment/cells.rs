//! The attribute-cell codec that segments and value indexes share.

use crate::attrs::AttrCells;
use crate::container::le;
use crate::error::{CoreError, Result};

/// Bit of an ATTR_CELLS count marking a list attribute's element groups.
const LIST_FLAG: u32 = 1 << 31;

/// Encodes attribute cells: per attribute `u32 count` (with bit 31 set for a list
/// attribute's element groups), `count` f64 minima, `count` f64 maxima.
pub fn encode_cells(cells: &[AttrCells]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cells {
        le::put_u32s(&mut out, &[c.len() as u32 | if c.list { LIST_FLAG } else { 0 }]);
        le::put_f64s(&mut out, &c.min);
        le::put_f64s(&mut out, &c.max);
    }
    out
}

/// Decodes `attrs` attribute cell tables (see [`encode_cells`]).
pub fn decode_cells(bytes: &[u8], object: &str, attrs: usize) -> Result<Vec<AttrCells>> {
    let mut r = le::Reader::new(bytes, object, "ATTR_CELLS");
    let mut out = Vec::with_capacity(attrs);
    for i in 0..attrs {
        let word = r.u32()?;
        let list = word & LIST_FLAG != 0;
        let n = (word & !LIST_FLAG) as usize;
        let most = if list {
            crate::attrs::LIST_GROUPS
        } else {
            crate::attrs::MAX_VALUE_CELLS
        };
        if n > most {
            return Err(CoreError::corrupt(
                object,
                format!("attribute {i} has {n} cells (max {most})"),
            ));
        }
        let min = r.f64s(n)?;
        let max = r.f64s(n)?;
        out.push(AttrCells { min, max, list });
    }
    r.finish()?;
    Ok(out)
}
