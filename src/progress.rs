//! Progress of long steps: which step is running and how long it has waited.
//!
//! A [`Step`] is a guard held across the wait it describes (a Google operation, a
//! Cloud DNS change, DNS propagation, the CA validating or issuing, the post-swap
//! check, one bootstrap action). What the user sees depends on where stderr goes:
//!
//! - a terminal (text logs): one status line, redrawn ten times a second, e.g.
//!   `| bootstrap: creating backend service web 4s > waiting for Google: insert backendServices/web 3s`.
//!   Log lines and the commands' own output are written around it (the line is
//!   cleared first and redrawn by the next tick), so nothing is garbled;
//! - anything else (a file, a pipe, the journal, JSON): plain `still waiting` log
//!   lines after 5 s, 15 s, 30 s, 60 s and then every minute, naming the step.
//!
//! Nothing is shown until [`enable`] is called (the CLI does, from
//! `logging::init`); library users and tests pay one uncontended lock per
//! step and nothing else.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Not at all (the default).
    Off,
    /// `still waiting` log lines at growing intervals.
    Lines,
    /// A status line on stderr, which is a terminal.
    Terminal,
}

/// When a running step is reported in [`Mode::Lines`]: after these many seconds,
/// then every [`LINES_EVERY`].
const LINES_AT: [u64; 4] = [5, 15, 30, 60];
const LINES_EVERY: u64 = 60;
/// Redraw interval of the terminal line.
const TICK: Duration = Duration::from_millis(100);
/// The ticker's check interval in [`Mode::Lines`].
const LINES_TICK: Duration = Duration::from_millis(500);
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
/// Erase the current terminal line and return to its start.
const CLEAR: &[u8] = b"\r\x1b[2K";

struct Active {
    id: u64,
    label: String,
    started: Instant,
    /// How many `still waiting` lines were written for it.
    reported: u64,
}

struct Board {
    mode: Mode,
    steps: Vec<Active>,
    next_id: u64,
    /// The status line is on the screen.
    drawn: bool,
    ticker: bool,
    frame: usize,
}

static BOARD: Mutex<Board> = Mutex::new(Board {
    mode: Mode::Off,
    steps: Vec::new(),
    next_id: 1,
    drawn: false,
    ticker: false,
    frame: 0,
});
static WAKE: Condvar = Condvar::new();

/// The board, even if a thread panicked while holding it: it holds no invariant
/// a panic could break half-way that matters more than showing progress.
fn board() -> MutexGuard<'static, Board> {
    BOARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Chooses how progress is shown; called once at start-up.
pub fn enable(mode: Mode) {
    let mut b = board();
    b.mode = mode;
    if mode != Mode::Off && !b.ticker {
        // A thread, not a task: it must tick while the runtime's workers are busy,
        // and it sleeps on a condition variable whenever no step runs.
        if std::thread::Builder::new()
            .name("progress".into())
            .spawn(ticker)
            .is_ok()
        {
            b.ticker = true;
        } else {
            b.mode = Mode::Off;
        }
    }
}

/// A step in progress; it ends when dropped.
#[must_use = "the step ends when this is dropped"]
#[derive(Debug)]
pub struct Step {
    id: u64,
}

impl Step {
    /// Starts a step described by `label` ("waiting for the CA to validate 2 names").
    pub fn start(label: impl Into<Cow<'static, str>>) -> Step {
        let mut b = board();
        if b.mode == Mode::Off {
            return Step { id: 0 };
        }
        let id = b.next_id;
        b.next_id += 1;
        b.steps.push(Active {
            id,
            label: label.into().into_owned(),
            started: Instant::now(),
            reported: 0,
        });
        drop(b);
        WAKE.notify_one();
        Step { id }
    }

    /// Changes what the step says (its clock keeps running).
    pub fn set(&self, label: impl Into<Cow<'static, str>>) {
        if self.id == 0 {
            return;
        }
        let mut b = board();
        if let Some(a) = b.steps.iter_mut().find(|a| a.id == self.id) {
            a.label = label.into().into_owned();
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        let mut b = board();
        b.steps.retain(|a| a.id != self.id);
        // Cleared now rather than at the next tick: the command's next output may
        // come right after the last step ends.
        if b.steps.is_empty() && b.drawn {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(CLEAR);
            let _ = err.flush();
            b.drawn = false;
        }
    }
}

/// Prints a line on stdout without tearing the status line.
pub fn println(line: &str) {
    let mut b = board();
    if b.drawn {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(CLEAR);
        let _ = err.flush();
        b.drawn = false;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The stderr writer of the text log layer in [`Mode::Terminal`]: clears the
/// status line before each log line (the ticker redraws it).
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut b = board();
        let mut err = std::io::stderr().lock();
        if b.drawn {
            err.write_all(CLEAR)?;
            b.drawn = false;
        }
        err.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn ticker() {
    let mut b = board();
    loop {
        if b.steps.is_empty() {
            b = WAKE.wait(b).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let mode = b.mode;
        let now = Instant::now();
        match mode {
            Mode::Off => {}
            Mode::Terminal => {
                b.frame = b.frame.wrapping_add(1);
                let line = status_line(&b.steps, now, b.frame, terminal_width());
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(CLEAR);
                let _ = err.write_all(line.as_bytes());
                let _ = err.flush();
                b.drawn = true;
            }
            Mode::Lines => {
                let due = due_reports(&mut b.steps, now);
                if !due.is_empty() {
                    // Logged without the board held: the log writer may take it.
                    drop(b);
                    for (label, waited) in due {
                        tracing::info!(step = %label, waited_s = waited, "still waiting: {label} ({})", seconds(waited));
                    }
                    b = board();
                    continue;
                }
            }
        }
        let tick = if mode == Mode::Terminal {
            TICK
        } else {
            LINES_TICK
        };
        b = WAKE
            .wait_timeout(b, tick)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// The steps whose next `still waiting` moment has come, with seconds waited;
/// marks them reported.
fn due_reports(steps: &mut [Active], now: Instant) -> Vec<(String, u64)> {
    let mut due = Vec::new();
    for a in steps.iter_mut() {
        let waited = now.saturating_duration_since(a.started).as_secs();
        let next = report_at(a.reported);
        if waited >= next {
            a.reported += 1;
            // After a long pause (a suspended machine), skip the moments passed.
            while report_at(a.reported) <= waited {
                a.reported += 1;
            }
            due.push((a.label.clone(), waited));
        }
    }
    due
}

/// Seconds after the start of a step when its `n`th report is due.
fn report_at(n: u64) -> u64 {
    match LINES_AT.get(n as usize) {
        Some(s) => *s,
        None => {
            let last = LINES_AT[LINES_AT.len() - 1];
            last + (n + 1 - LINES_AT.len() as u64) * LINES_EVERY
        }
    }
}

/// `7s`, `2m05s`, `1h02m`.
fn seconds(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The oldest step (what the command is doing) and, when others run, the newest
/// (what it waits on right now): `| outer 12s > (+1) inner 3s`.
fn status_line(steps: &[Active], now: Instant, frame: usize, width: usize) -> String {
    let waited = |a: &Active| seconds(now.saturating_duration_since(a.started).as_secs());
    let mut line = String::new();
    line.push(SPINNER[frame % SPINNER.len()]);
    if let Some(first) = steps.first() {
        line.push_str(&format!(" {} {}", first.label, waited(first)));
    }
    if steps.len() > 1
        && let Some(last) = steps.last()
    {
        line.push_str(" > ");
        if steps.len() > 2 {
            line.push_str(&format!("(+{}) ", steps.len() - 2));
        }
        line.push_str(&format!("{} {}", last.label, waited(last)));
    }
    // A line longer than the terminal wraps, and the carriage return would then
    // clear only its last row: cut it to fit.
    let max = width.saturating_sub(1).max(10);
    if line.chars().count() > max {
        line = line.chars().take(max - 1).collect();
        line.push('~');
    }
    line
}

fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr())
        .map(|(w, _)| w.0 as usize)
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(id: u64, label: &str, ago: u64, now: Instant) -> Active {
        Active {
            id,
            label: label.into(),
            started: now - Duration::from_secs(ago),
            reported: 0,
        }
    }

    #[test]
    fn report_moments_grow_then_repeat_every_minute() {
        let at: Vec<u64> = (0..7).map(report_at).collect();
        assert_eq!(at, [5, 15, 30, 60, 120, 180, 240]);
    }

    #[test]
    fn each_moment_is_reported_once_and_passed_ones_are_skipped() {
        let now = Instant::now();
        let mut steps = vec![active(1, "a", 6, now), active(2, "b", 2, now)];
        assert_eq!(due_reports(&mut steps, now), [("a".to_string(), 6)]);
        assert!(due_reports(&mut steps, now).is_empty(), "reported twice");
        // 70 s later: 15, 30 and 60 have passed; one line, the next at 120.
        let later = now + Duration::from_secs(70);
        let due = due_reports(&mut steps, later);
        assert_eq!(due, [("a".to_string(), 76), ("b".to_string(), 72)]);
        assert_eq!(report_at(steps[0].reported), 120);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(7), "7s");
        assert_eq!(seconds(125), "2m05s");
        assert_eq!(seconds(3720), "1h02m");
    }

    #[test]
    fn the_line_shows_the_outer_step_and_the_current_wait() {
        let now = Instant::now();
        let one = [active(1, "creating backend service web", 4, now)];
        assert_eq!(
            status_line(&one, now, 0, 200),
            "| creating backend service web 4s"
        );
        let three = [
            active(1, "app: renewing", 12, now),
            active(2, "api: renewing", 11, now),
            active(3, "waiting for the CA to validate 2 names", 3, now),
        ];
        assert_eq!(
            status_line(&three, now, 1, 200),
            "/ app: renewing 12s > (+1) waiting for the CA to validate 2 names 3s"
        );
    }

    #[test]
    fn the_line_never_wraps() {
        let now = Instant::now();
        let long = [active(1, &"x".repeat(300), 1, now)];
        let line = status_line(&long, now, 0, 40);
        assert_eq!(line.chars().count(), 39);
        assert!(line.ends_with('~'));
    }

    #[test]
    fn steps_cost_nothing_while_progress_is_off() {
        // The default mode in tests: no id, nothing on the board.
        let s = Step::start("anything");
        assert_eq!(s.id, 0);
        s.set("else");
    }
}
