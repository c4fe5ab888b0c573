//! `squash query`: one vector, or a batch from a file, against an index.

use super::{open_index, CliError, Knobs, Result};
use clap::Args;
use rayon::prelude::*;
use squash_api::SearchRequest;
use squash_build::io::{read_json_lines, read_vectors};
use squash_engine::SearchError;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct QueryArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Query vectors file (.npy/.fvecs), one query per row.
    #[arg(long, conflicts_with = "vector")]
    queries: Option<PathBuf>,
    /// One query vector as comma-separated numbers.
    #[arg(long, allow_hyphen_values = true)]
    vector: Option<String>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// One JSON filter per line, line i for query i (`null` or `{}` = no filter).
    #[arg(long, conflicts_with = "filter")]
    filters: Option<PathBuf>,
    /// One JSON filter applied to every query.
    #[arg(long)]
    filter: Option<String>,
    /// Print one JSON line per query.
    #[arg(long)]
    json: bool,
    /// Include attribute values in results.
    #[arg(long)]
    include_attributes: bool,
    /// Include per-query stats in JSON output.
    #[arg(long)]
    stats: bool,
    /// Queries answered per batch (1 to 100): a file of queries goes through the batch
    /// search, one plan and one fan-out per batch.
    #[arg(long, default_value_t = squash_api::MAX_BATCH)]
    batch: usize,
    #[command(flatten)]
    knobs: Knobs,
}

fn parse_vector(text: &str) -> Result<Vec<f32>> {
    text.split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            s.parse::<f32>()
                .map_err(|_| CliError::bad("vector", format!("component {i} ('{s}') is not a number")))
        })
        .collect()
}

/// Runs `squash query`.
pub fn run(a: QueryArgs) -> Result<()> {
    let index = open_index(&a.index)?;
    let queries: Vec<Vec<f32>> = match (&a.queries, &a.vector) {
        (Some(p), _) => {
            let m = read_vectors(p)?;
            (0..m.rows).map(|i| m.row(i).to_vec()).collect()
        }
        (None, Some(v)) => vec![parse_vector(v)?],
        (None, None) => return Err(CliError::bad("queries", "give --queries FILE or --vector 1,2,3")),
    };
    let filters: Vec<Option<serde_json::Value>> = match (&a.filters, &a.filter) {
        (Some(p), _) => {
            let lines = read_json_lines(p)?;
            if lines.len() != queries.len() {
                return Err(CliError::input(
                    p.display(),
                    format!("has {} filter lines for {} queries", lines.len(), queries.len()),
                ));
            }
            lines.into_iter().map(|v| (!v.is_null()).then_some(v)).collect()
        }
        (None, Some(f)) => {
            let v: serde_json::Value =
                serde_json::from_str(f).map_err(|e| CliError::bad("filter", format!("invalid JSON: {e}")))?;
            vec![Some(v); queries.len()]
        }
        (None, None) => vec![None; queries.len()],
    };
    // Queries run in parallel (each one also fans out over partitions); answers are
    // printed in query order, and the first failing query (in order) is reported.
    let requests: Vec<SearchRequest> = queries
        .into_iter()
        .zip(filters)
        .map(|(vector, filter)| SearchRequest {
            vector,
            k: a.k,
            offset: 0,
            filter,
            include: if a.include_attributes {
                vec!["attributes".into()]
            } else {
                vec![]
            },
            params: a.knobs.params(),
            allow_partial: false,
            consistency: None,
        })
        .collect();
    if a.batch == 0 || a.batch > squash_api::MAX_BATCH {
        return Err(CliError::bad(
            "batch",
            format!("must be between 1 and {}", squash_api::MAX_BATCH),
        ));
    }
    // Batches run in parallel; a bad query is named by its place in the whole file.
    let batches: Vec<std::result::Result<Vec<squash_api::SearchResponse>, SearchError>> = requests
        .par_chunks(a.batch)
        .enumerate()
        .map(|(c, chunk)| {
            index
                .search_batch(chunk)
                .map(|b| b.results)
                .map_err(|e| renumber(e, c * a.batch))
        })
        .collect();
    let mut responses = Vec::with_capacity(requests.len());
    for b in batches {
        responses.extend(b?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, resp) in responses.into_iter().enumerate() {
        let write = if a.json {
            let mut line = serde_json::json!({
                "query": i,
                "ids": resp.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
                "distances": resp.hits.iter().map(|h| h.distance).collect::<Vec<_>>(),
            });
            if a.include_attributes {
                line["attributes"] = resp
                    .hits
                    .iter()
                    .map(|h| h.attributes.clone())
                    .collect::<serde_json::Value>();
            }
            if a.stats {
                line["stats"] = serde_json::to_value(&resp.stats).unwrap_or_default();
            }
            writeln!(out, "{line}")
        } else {
            let mut text = format!("query {i}:");
            for h in &resp.hits {
                text.push_str(&format!(" {}({:.4})", h.id, h.distance));
            }
            writeln!(out, "{text}")
        };
        if write.is_err() {
            break; // stdout closed (e.g. piped into head): stop quietly.
        }
    }
    let _ = out.flush();
    Ok(())
}

/// A batch's error with `queries[j]` renumbered to the query's place in the file
/// (`offset + j`).
fn renumber(e: SearchError, offset: usize) -> SearchError {
    match e {
        SearchError::BadRequest { field, message } => {
            let field = match field
                .strip_prefix("queries[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(j, rest)| j.parse::<usize>().ok().map(|j| (j, rest)))
            {
                Some((j, rest)) => format!("queries[{}]{rest}", offset + j),
                None => field,
            };
            SearchError::BadRequest { field, message }
        }
        other => other,
    }
}
