//! The worker pipeline: for each assigned partition, fetch the segment (cache, else the
//! object store, verified against the manifest's size and checksum); in the fine lists
//! the planner chose, filter on attribute codes, prune by Hamming distance, bound by ADC;
//! then re-rank the best bounds of all segments together, exactly. The scan kernel
//! ([`scan`]), what a worker holds (`state`), getting segments (`fetch`), running a
//! request's queries (`batch`) and the fan-out tree (`fanout`) each have a file.

mod batch;
mod fanout;
mod fetch;
pub mod scan;
mod state;

pub use fanout::{merge_answers, merge_hits};
pub use scan::{
    bound_again, bound_segment, bound_selected, rerank, search_segment, select_rows, Bounds, PartitionParams, Reranked,
    RowHit, ScanMemo, Selected, HAMMING_FLOOR_FACTOR,
};
pub use state::{RangeReads, Worker};
