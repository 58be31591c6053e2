//! Progress of the time loop: a bar on a terminal, log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Resolution of the bar: progress is the larger of the step and time
/// fractions, in thousandths.
const BAR_LEN: u64 = 1000;
/// Wall time between two log lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(2);

/// Where a step of the loop stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Steps done since t = 0.
    pub step: u64,
    /// Simulated time.
    pub time: f64,
    /// Million cell updates per second of solver time so far.
    pub mcells_per_second: f64,
}

enum Sink {
    Bar(ProgressBar),
    Log(Instant),
}

/// Reports the progress of a run towards `nstepmax` or `tend`.
pub struct Progress {
    sink: Sink,
    nstepmax: u64,
    tend: f64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.sink {
            Sink::Bar(_) => "bar",
            Sink::Log(_) => "log",
        };
        write!(f, "Progress({kind})")
    }
}

impl Progress {
    /// A bar when stderr is a terminal, log lines every two seconds
    /// otherwise.
    pub fn new(nstepmax: u64, tend: f64) -> Progress {
        let sink = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(BAR_LEN), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {percent:>3}% {msg} [{elapsed}]")
                    .expect("the template is valid"),
            );
            Sink::Bar(bar)
        } else {
            Sink::Log(Instant::now())
        };
        Progress {
            sink,
            nstepmax,
            tend,
        }
    }

    /// Reports a finished step.
    pub fn tick(&mut self, t: Tick) {
        match &mut self.sink {
            Sink::Bar(bar) => {
                let by_step = t.step as f64 / self.nstepmax as f64;
                let by_time = t.time / self.tend;
                let done = by_step.max(by_time).clamp(0.0, 1.0);
                bar.set_message(format!(
                    "step {} t {:.4e} {:.1} MC/s",
                    t.step, t.time, t.mcells_per_second
                ));
                bar.set_position((done * BAR_LEN as f64) as u64);
            }
            Sink::Log(last) => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    tracing::info!(
                        step = t.step,
                        t = t.time,
                        mcs = format!("{:.1}", t.mcells_per_second),
                        "progress"
                    );
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}
