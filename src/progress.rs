//! Progress bars for long work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that follows a counter until dropped: a spinner with a rate when the total is
/// unknown, a bar with rate and ETA when it is known.
pub struct CounterBar {
    bar: ProgressBar,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CounterBar {
    /// Starts a bar labelled `label` over `counter`; hidden when `quiet`.
    pub fn start(label: &str, counter: Arc<AtomicU64>, total: Option<u64>, quiet: bool) -> Self {
        if quiet {
            return Self {
                bar: ProgressBar::hidden(),
                task: None,
            };
        }
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta})",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {msg}: {pos} rows ({per_sec}, {elapsed})",
            ),
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());

        let ticking = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                ticking.set_position(counter.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }
}

impl Drop for CounterBar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
