//! Harness: the real binary under a pseudo-terminal of a given size, read back
//! through a terminal emulator (vt100), so tests see the screen a person sees.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};

/// Rows of the emulated screen: enough that nothing a run prints scrolls away.
const ROWS: u16 = 80;

pub struct Pty {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    reader: Option<JoinHandle<()>>,
    cols: u16,
}

impl Pty {
    /// Starts `mockmate-diag args` in `dir` on a `cols`-column terminal, with only
    /// PATH, TERM and `envs` in its environment.
    pub fn spawn(dir: &Path, cols: u16, args: &[&str], envs: &[(&str, String)]) -> Pty {
        let pair = native_pty_system()
            .openpty(PtySize { rows: ROWS, cols, pixel_width: 0, pixel_height: 0 })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new(assert_cmd::cargo::cargo_bin("mockmate-diag"));
        cmd.args(args);
        cmd.env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.env("TERM", "xterm-256color");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.cwd(dir);
        let child = pair.slave.spawn_command(cmd).expect("spawn mockmate-diag on the pty");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let nonzero = |n: u16| std::num::NonZeroU16::new(n).expect("a screen has rows and columns");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(nonzero(ROWS), nonzero(cols), 0)));
        let feed = screen.clone();
        let reader = std::thread::spawn(move || {
            // Keeps the master open until the child is gone.
            let _master = pair.master;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap_or_else(PoisonError::into_inner).process(&buf[..n]);
            }
        });
        Pty { child, writer, screen, reader: Some(reader), cols }
    }

    /// The screen, row by row, trailing blank rows and spaces removed.
    pub fn screen(&self) -> String {
        let parser = self.screen.lock().unwrap_or_else(PoisonError::into_inner);
        let rows: Vec<String> = parser.screen().rows(0, self.cols).map(|r| r.trim_end().to_string()).collect();
        let last = rows.iter().rposition(|r| !r.is_empty()).map_or(0, |i| i + 1);
        rows[..last].join("\n")
    }

    /// Waits until the screen satisfies `done`, or panics with the screen after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(start.elapsed() < timeout, "no {what} after {timeout:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types Ctrl-C: the terminal sends SIGINT to the program, as for a person.
    pub fn ctrl_c(&mut self) {
        self.writer.write_all(b"\x03").expect("type ^C");
        self.writer.flush().expect("flush ^C");
    }

    /// Waits for the program to exit (panics after `timeout`) and for its last
    /// bytes to reach the screen; returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> u32 {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                break status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("still running after {timeout:?}; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status.exit_code()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
