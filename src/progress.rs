//! The progress line on a terminal: how many checks are done and which is the
//! slowest still running. Only on a terminal, never in CI or for machine formats.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Observer;
use crate::report::CheckResult;

pub struct Progress {
    bar: ProgressBar,
    running: Mutex<Vec<(String, Instant)>>,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {pos}/{len} checks {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar, running: Mutex::new(Vec::new()) }
    }

    fn refresh(&self, running: &[(String, Instant)]) {
        // The check that started first and is still running is the slowest so far.
        match running.iter().min_by_key(|(_, t)| *t) {
            Some((id, t)) => self.bar.set_message(format!("· waiting on {id} ({:.1}s)", t.elapsed().as_secs_f64())),
            None => self.bar.set_message(String::new()),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn started(&self, id: &str) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.push((id.to_string(), Instant::now()));
        self.refresh(&running);
    }

    fn finished(&self, result: &CheckResult) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|(id, _)| id != &result.id);
        self.bar.inc(1);
        self.refresh(&running);
    }
}
