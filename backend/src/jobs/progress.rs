//! How a long job shows it is moving: a progress bar on a terminal (slices of the walk done,
//! counts, rate, time left), plain log lines elsewhere (CI, Cloud Run, a pipe), both on stderr
//! so the standard output stays the job's result.

use crate::store::docs::JobCounts;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One job's progress display.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A display over `total` steps (the windows × queries of a walk, the rows of a file).
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(what);
            bar
        });
        let now = Instant::now();
        Self { bar, what, started: now, last_line: now - Duration::from_secs(60) }
    }

    /// Shows `done` of the steps and the counts so far.
    pub fn update(&mut self, done: u64, total: u64, counts: &JobCounts) {
        let rate = counts.records as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let message = format!(
            "pages {}, records {}, facts {}, known {}, published {}, errors {}, {rate:.0} records/s",
            counts.pages, counts.records, counts.facts, counts.known, counts.published, counts.errors
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(message);
            }
            // At most a line every 2 s: a log, not a flood.
            None if self.last_line.elapsed() >= Duration::from_secs(2) || done == total => {
                self.last_line = Instant::now();
                eprintln!("{}: step {done}/{total}: {message}", self.what);
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
