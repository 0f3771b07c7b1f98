//! Progress bars for long work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner that shows a row counter and its rate until dropped.
pub struct RowSpinner {
    bar: ProgressBar,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RowSpinner {
    /// Starts a spinner labelled `label` that follows `rows`; hidden when `quiet`.
    pub fn start(label: &str, rows: Arc<AtomicU64>, quiet: bool) -> Self {
        if quiet {
            return Self {
                bar: ProgressBar::hidden(),
                task: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {msg}: {pos} rows ({per_sec}, {elapsed})")
            .expect("the template is valid");
        bar.set_style(style);
        bar.set_message(label.to_string());

        let ticking = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                ticking.set_position(rows.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }
}

impl Drop for RowSpinner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
