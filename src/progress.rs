//! The progress line on a terminal: how many checks are done and which is the
//! slowest still running. Only on a terminal, never in CI or for machine formats.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Observer;
use crate::output::StderrTerm;
use crate::report::CheckResult;

type Running = Arc<Mutex<Vec<(String, Instant)>>>;

pub struct Progress {
    bar: ProgressBar,
    running: Running,
}

impl Progress {
    /// A progress line on `term` (the output's stderr, redacted like the rest).
    pub fn new(total: usize, term: StderrTerm) -> Progress {
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term), 10);
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        let style = ProgressStyle::with_template("{spinner} {pos}/{len} checks {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        let running: Running = Arc::default();
        // Keep the slowest check's time ticking while nothing starts or finishes (a hung server).
        let (ticker_bar, ticker_running) = (bar.clone(), running.clone());
        std::thread::spawn(move || {
            while !ticker_bar.is_finished() {
                std::thread::sleep(Duration::from_millis(200));
                refresh(&ticker_bar, &ticker_running);
            }
        });
        Progress { bar, running }
    }
}

/// Names the check that started first and is still running: the slowest so far.
fn refresh(bar: &ProgressBar, running: &Running) {
    let running = running.lock().unwrap_or_else(PoisonError::into_inner);
    match running.iter().min_by_key(|(_, t)| *t) {
        Some((id, t)) => bar.set_message(format!("· waiting on {id} ({:.1}s)", t.elapsed().as_secs_f64())),
        None => bar.set_message(String::new()),
    }
}

impl Observer for Progress {
    fn started(&self, id: &str) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).push((id.to_string(), Instant::now()));
        refresh(&self.bar, &self.running);
    }

    fn finished(&self, result: &CheckResult) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| id != &result.id);
        self.bar.inc(1);
        refresh(&self.bar, &self.running);
    }
}

impl Drop for Progress {
    /// The line disappears before the report is printed.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
