//! Progress rendering of build events: `plain` (BuildKit-style `#N` lines), `tty` (a live
//! view with a spinner per running step), `rawjson` (one JSON event per line on stdout),
//! `quiet` (nothing but errors).

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_build::Event;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// tty when stderr is a terminal, else plain.
    Auto,
    /// Live view.
    Tty,
    /// One line per step and per output line.
    Plain,
    /// JSON events on stdout.
    Rawjson,
    /// Nothing.
    Quiet,
}

/// Renders events for one build.
pub(crate) struct Renderer {
    mode: ProgressMode,
    live: Option<Live>,
    names: Mutex<BTreeMap<usize, String>>,
    /// The highest `#N` seen: the final "writing image" line is numbered after it.
    last_step: AtomicUsize,
}

struct Live {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<usize, ProgressBar>>,
}

impl Renderer {
    pub(crate) fn new(mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto
                if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() =>
            {
                ProgressMode::Tty
            }
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let live = (mode == ProgressMode::Tty).then(|| Live {
            multi: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        });
        Self {
            mode,
            live,
            names: Mutex::new(BTreeMap::new()),
            last_step: AtomicUsize::new(0),
        }
    }

    pub(crate) fn render(&self, event: &Event) {
        if let Some(step) = step_of(event) {
            self.last_step.fetch_max(step, Ordering::SeqCst);
        }
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Rawjson => {
                if let Ok(line) = serde_json::to_string(event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                }
            }
            ProgressMode::Tty => self.render_live(event),
            ProgressMode::Plain | ProgressMode::Auto => {
                if let Some(line) = self.plain_line(event) {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }

    /// The plain line for an event (`None` when the event prints nothing).
    fn plain_line(&self, event: &Event) -> Option<String> {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(match event {
            // A cached step prints one line that ends in CACHED, so the header waits for the
            // outcome: StepStarted is remembered, printed on the first other event.
            Event::StepStarted { step, name } => {
                names.insert(*step, name.clone());
                return None;
            }
            Event::StepCached { step, name, from } => {
                names.remove(step);
                match from {
                    None => format!("#{step} {name} CACHED"),
                    Some(cache) => format!("#{step} {name} CACHED (from {cache})"),
                }
            }
            Event::CacheMiss { step, reason } => {
                let name = names.remove(step).unwrap_or_default();
                format!("#{step} {name}\n#{step} cache miss: {reason}")
            }
            Event::Log {
                step,
                elapsed,
                line,
                ..
            } => format!("#{step} {elapsed:.3} {line}"),
            Event::StepDone { step, duration } => {
                let header = names
                    .remove(step)
                    .map(|n| format!("#{step} {n}\n"))
                    .unwrap_or_default();
                format!("{header}#{step} DONE {:.1}s", duration.as_secs_f64())
            }
            Event::StepFailed { step, error } => {
                let header = names
                    .remove(step)
                    .map(|n| format!("#{step} {n}\n"))
                    .unwrap_or_default();
                let first = error.lines().next().unwrap_or_default();
                format!("{header}#{step} ERROR: {first}")
            }
            Event::Warning { message } => format!("WARNING: {message}"),
            Event::Isolation { mode, reason } => isolation_line(mode, reason.as_deref()),
            Event::Pushed { reference } => format!("pushed {reference}"),
            Event::Finished {
                manifest_digest,
                config_digest,
                duration,
            } => format!(
                "#{} writing image {config_digest} (manifest {manifest_digest}) DONE {:.1}s",
                self.last_step.load(Ordering::SeqCst) + 1,
                duration.as_secs_f64()
            ),
            _ => return None,
        })
    }

    fn render_live(&self, event: &Event) {
        let Some(live) = &self.live else { return };
        let mut bars = live
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::StepStarted { step, name } => {
                let bar = live.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("#{step} {name}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bars.insert(*step, bar);
            }
            Event::StepCached { step, name, from } => {
                if let Some(bar) = bars.remove(step) {
                    bar.finish_and_clear();
                }
                let line = match from {
                    None => format!("✔ #{step} {name} CACHED"),
                    Some(cache) => format!("✔ #{step} {name} CACHED (from {cache})"),
                };
                let _ = live.multi.println(line);
            }
            Event::Log { step, line, .. } => {
                if let Some(bar) = bars.get(step) {
                    let shown: String = line.chars().take(100).collect();
                    bar.set_message(format!("#{step} {shown}"));
                }
                let _ = live.multi.println(format!("  #{step} {line}"));
            }
            Event::StepDone { step, duration } => {
                if let Some(bar) = bars.remove(step) {
                    let msg = bar.message();
                    bar.finish_and_clear();
                    let _ = live
                        .multi
                        .println(format!("✔ {msg} {:.1}s", duration.as_secs_f64()));
                }
            }
            Event::StepFailed { step, error } => {
                if let Some(bar) = bars.remove(step) {
                    bar.finish_and_clear();
                }
                let _ = live.multi.println(format!(
                    "✘ #{step} {}",
                    error.lines().next().unwrap_or_default()
                ));
            }
            Event::CacheMiss { step, reason } => {
                let _ = live
                    .multi
                    .println(format!("  #{step} cache miss: {reason}"));
            }
            Event::Warning { message } => {
                let _ = live.multi.println(format!("WARNING: {message}"));
            }
            Event::Isolation { mode, reason } => {
                let _ = live.multi.println(isolation_line(mode, reason.as_deref()));
            }
            Event::Pushed { reference } => {
                let _ = live.multi.println(format!("pushed {reference}"));
            }
            Event::Finished {
                config_digest,
                duration,
                ..
            } => {
                let _ = live.multi.println(format!(
                    "✔ writing image {config_digest} {:.1}s",
                    duration.as_secs_f64()
                ));
            }
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(live) = &self.live {
            let bars = live
                .bars
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The `#N` an event belongs to, if any.
fn step_of(event: &Event) -> Option<usize> {
    match event {
        Event::StepStarted { step, .. }
        | Event::StepCached { step, .. }
        | Event::CacheMiss { step, .. }
        | Event::Log { step, .. }
        | Event::StepDone { step, .. }
        | Event::StepFailed { step, .. } => Some(*step),
        _ => None,
    }
}

/// The line for [`Event::Isolation`]: the mode, or, when the build settled for a weaker one,
/// a warning that says why (and names the mode).
fn isolation_line(mode: &str, reason: Option<&str>) -> String {
    match reason {
        None => format!("isolation: {mode}"),
        Some(reason) => format!("WARNING: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_image_is_numbered_after_the_last_step() {
        let renderer = Renderer::new(ProgressMode::Plain);
        for step in 1..=3 {
            let name = format!("[{step}/3] RUN true");
            renderer.render(&Event::StepStarted {
                step,
                name: name.clone(),
            });
            renderer.render(&Event::StepCached {
                step,
                name,
                from: None,
            });
        }
        let line = renderer
            .plain_line(&Event::Finished {
                manifest_digest: "sha256:m".into(),
                config_digest: "sha256:c".into(),
                duration: std::time::Duration::from_millis(5),
            })
            .unwrap();
        assert!(line.starts_with("#4 writing image sha256:c"), "{line}");
    }

    #[test]
    fn an_imported_hit_names_its_cache_and_a_local_hit_is_unchanged() {
        let renderer = Renderer::new(ProgressMode::Plain);
        for (step, from) in [
            (1, None),
            (2, Some("localhost:5000/app/cache:main".to_owned())),
        ] {
            renderer.render(&Event::StepStarted {
                step,
                name: "[2/2] RUN make".into(),
            });
            let line = renderer
                .plain_line(&Event::StepCached {
                    step,
                    name: "[2/2] RUN make".into(),
                    from,
                })
                .unwrap();
            let expected = if step == 1 {
                "#1 [2/2] RUN make CACHED".to_owned()
            } else {
                "#2 [2/2] RUN make CACHED (from localhost:5000/app/cache:main)".to_owned()
            };
            assert_eq!(line, expected);
        }
    }
}
