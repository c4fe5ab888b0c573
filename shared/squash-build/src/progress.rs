//! Progress bars for long steps (drawn on stderr only when it is a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that can be switched off.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `total` steps labelled `label`, or nothing when `enabled` is false.
    pub fn new(enabled: bool, label: &str, total: u64) -> Progress {
        if !enabled {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template("{msg:>20} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        Progress(Some(bar))
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Finishes the bar, leaving it on screen.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish();
        }
    }
}
