//! The only place bytes leave the process: stdout, stderr, report files
//! (`--report`) and `serve`'s HTTP bodies ([`Body`]). Everything written here
//! passes through the redactor; colour follows one policy per sink, decided
//! here (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`, terminal or not for the
//! streams; never for files and HTTP bodies). The streams are injected: `main`
//! hands in the process's stdout and stderr, tests in-memory buffers, so
//! formats, exit codes and redaction are testable without spawning the binary.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::UsageError;
use crate::redact::Redactor;
use crate::report::Report;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// One output stream: where it goes, whether it is a terminal, whether it gets colour.
#[derive(Clone)]
struct Stream {
    sink: Sink,
    terminal: bool,
    /// The terminal's width in columns, when it is one and says.
    columns: Option<u16>,
    /// What `--color auto` resolves to for this stream (environment and terminal).
    auto_color: bool,
    color: bool,
}

impl Stream {
    fn new(sink: Box<dyn Write + Send>, terminal: bool, auto_color: bool) -> Stream {
        Stream { sink: Arc::new(Mutex::new(sink)), terminal, columns: None, auto_color, color: auto_color }
    }

    fn set_color(&mut self, when: ColorWhen) {
        self.color = match when {
            ColorWhen::Auto => self.auto_color,
            ColorWhen::Always => true,
            ColorWhen::Never => false,
        };
    }

    /// Broken pipes (`| head`) are not an error worth reporting.
    fn write(&self, text: &str, styled: bool) {
        let _ = self.try_write(text, styled);
    }

    fn try_write(&self, text: &str, styled: bool) -> io::Result<()> {
        let text = if styled && self.color { text.to_string() } else { anstream::adapter::strip_str(text).to_string() };
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.write_all(text.as_bytes()).and_then(|()| sink.flush())
    }
}

pub struct Output {
    redactor: Redactor,
    stdout: Stream,
    stderr: Stream,
    /// Report files (`--report FORMAT=PATH`), by [`FileId`], with the path errors name.
    files: Vec<(String, Stream)>,
}

/// A report file opened by [`Output::open_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(usize);

/// What an in-memory [`Output`] received, for tests.
#[derive(Clone, Default)]
pub struct Captured {
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// A `Write` into a shared buffer.
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// The process's stdout and stderr. `--color auto` follows anstream's reading
    /// of the environment (`NO_COLOR`, `CLICOLOR_FORCE`, `TERM`) and the terminal.
    pub fn process(redactor: Redactor) -> Output {
        let colored = |choice: anstream::ColorChoice| choice != anstream::ColorChoice::Never;
        let mut stdout = Stream::new(
            Box::new(io::stdout()),
            io::IsTerminal::is_terminal(&io::stdout()),
            colored(anstream::AutoStream::choice(&io::stdout())),
        );
        stdout.columns = terminal_size::terminal_size_of(io::stdout()).map(|(w, _)| w.0).filter(|w| *w > 0);
        let stderr = Stream::new(
            Box::new(io::stderr()),
            io::IsTerminal::is_terminal(&io::stderr()),
            colored(anstream::AutoStream::choice(&io::stderr())),
        );
        Output { redactor, stdout, stderr, files: Vec::new() }
    }

    /// In-memory streams that are not terminals (so `auto` means no colour).
    pub fn memory(redactor: Redactor) -> (Output, Captured) {
        let captured = Captured::default();
        let stdout = Stream::new(Box::new(Buffer(captured.stdout.clone())), false, false);
        let stderr = Stream::new(Box::new(Buffer(captured.stderr.clone())), false, false);
        (Output { redactor, stdout, stderr, files: Vec::new() }, captured)
    }

    /// Creates a report file now, before any check runs, so a bad path is a usage
    /// error rather than a lost artifact. Files never get colour, whatever `--color` says.
    /// `path` is read from `cwd`; errors name it as given.
    pub fn open_file(&mut self, path: &std::path::Path, cwd: &std::path::Path) -> Result<FileId, UsageError> {
        let label = path.display().to_string();
        let file = std::fs::File::create(cwd.join(path))
            .map_err(|e| UsageError::new(format!("--report {label}: cannot write: {e}")))?;
        self.files.push((label, Stream::new(Box::new(file), false, false)));
        Ok(FileId(self.files.len() - 1))
    }

    /// Writes to a report file, redacted and uncoloured.
    pub fn file(&self, id: FileId, text: &str) -> Result<(), UsageError> {
        let Some((label, stream)) = self.files.get(id.0) else { return Ok(()) };
        stream
            .try_write(&self.redactor.redact(text), false)
            .map_err(|e| UsageError::new(format!("--report {label}: cannot write: {e}")))
    }

    /// `report` with every secret the redactor knows masked in its data, before
    /// any format lays it out (a secret a layout wraps across lines is masked
    /// whole); the text is redacted again where it leaves.
    pub fn redacted(&self, report: &Report) -> Report {
        let mut report = report.clone();
        self.redactor.redact_report(&mut report);
        report
    }

    pub fn set_color(&mut self, when: ColorWhen) {
        self.stdout.set_color(when);
        self.stderr.set_color(when);
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn set_redactor(&mut self, redactor: Redactor) {
        crate::redact::install_global(&redactor);
        self.redactor = redactor;
    }

    /// Writes to stdout, styled when colour is on.
    pub fn stdout(&self, text: &str) {
        self.stdout.write(&self.redactor.redact(text), true);
    }

    /// Writes to stdout with no colour at all (machine formats).
    pub fn stdout_plain(&self, text: &str) {
        self.stdout.write(&self.redactor.redact(text), false);
    }

    pub fn stderr(&self, text: &str) {
        self.stderr.write(&self.redactor.redact(text), true);
    }

    pub fn stdout_is_terminal(&self) -> bool {
        self.stdout.terminal
    }

    /// Columns of the terminal stdout is, if it is one.
    pub fn stdout_columns(&self) -> Option<u16> {
        self.stdout.columns.filter(|_| self.stdout.terminal)
    }

    pub fn stderr_is_terminal(&self) -> bool {
        self.stderr.terminal
    }

    /// A terminal-like view of stderr for the progress line: it redacts too.
    pub fn stderr_term(&self, width: u16) -> StderrTerm {
        StderrTerm { stream: self.stderr.clone(), redactor: self.redactor.clone(), width }
    }
}

/// An HTTP body's way out (`serve`): redacted with the secrets of the target it
/// answers for, never coloured.
#[derive(Clone)]
pub struct Body {
    redactor: Redactor,
}

impl Body {
    pub fn new(redactor: Redactor) -> Body {
        Body { redactor }
    }

    /// A body's text, redacted and uncoloured.
    pub fn text(&self, text: &str) -> String {
        anstream::adapter::strip_str(&self.redactor.redact(text)).to_string()
    }

    /// `report` with its secrets masked in its data (see [`Output::redacted`]).
    pub fn redacted(&self, report: &Report) -> Report {
        let mut report = report.clone();
        self.redactor.redact_report(&mut report);
        report
    }
}

/// stderr as indicatif's `TermLike`, through the same sink and redactor as
/// every other byte.
#[derive(Clone)]
pub struct StderrTerm {
    stream: Stream,
    redactor: Redactor,
    width: u16,
}

impl std::fmt::Debug for StderrTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StderrTerm").field("width", &self.width).finish_non_exhaustive()
    }
}

impl StderrTerm {
    fn raw(&self, text: &str) -> io::Result<()> {
        let mut sink = self.stream.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.write_all(text.as_bytes())
    }
}

impl indicatif::TermLike for StderrTerm {
    fn width(&self) -> u16 {
        self.width
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        if n > 0 { self.raw(&format!("\x1b[{n}A")) } else { Ok(()) }
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        if n > 0 { self.raw(&format!("\x1b[{n}B")) } else { Ok(()) }
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        if n > 0 { self.raw(&format!("\x1b[{n}C")) } else { Ok(()) }
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        if n > 0 { self.raw(&format!("\x1b[{n}D")) } else { Ok(()) }
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)?;
        self.raw("\n")
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        let clean = self.redactor.redact(s);
        let text =
            if self.stream.color { clean.into_owned() } else { anstream::adapter::strip_str(&clean).to_string() };
        self.raw(&text)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.raw("\r\x1b[2K")
    }

    fn flush(&self) -> io::Result<()> {
        self.stream.sink.lock().unwrap_or_else(PoisonError::into_inner).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_written_is_redacted_and_colour_follows_the_policy() {
        let redactor = Redactor::from_env([("JWT_SECRET", "S3ntinel-jwt-value")]);
        let (mut out, captured) = Output::memory(redactor);
        let red = "\x1b[31mFAIL\x1b[0m";
        out.stdout(&format!("{red} saw S3ntinel-jwt-value\n"));
        out.stderr("postgres://app:pw-in-url@db/x\n");
        assert_eq!(captured.stdout(), "FAIL saw ****\n");
        assert_eq!(captured.stderr(), "postgres://app:****@db/x\n");
        out.set_color(ColorWhen::Always);
        out.stdout(red);
        out.stdout_plain(red);
        assert!(captured.stdout().ends_with(&format!("{red}FAIL")), "{:?}", captured.stdout());
    }

    #[test]
    fn the_progress_term_redacts_too() {
        let (out, captured) = Output::memory(Redactor::from_env([("DB_PASSWORD", "pr0gress-secret")]));
        let term = out.stderr_term(80);
        indicatif::TermLike::write_line(&term, "waiting on pr0gress-secret").expect("writes");
        assert_eq!(captured.stderr(), "waiting on ****\n");
    }
}
