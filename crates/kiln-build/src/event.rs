//! Progress events of a build: what the CLI renders (`--progress plain|tty|rawjson|quiet`)
//! and what embedders read.

use std::time::Duration;

use serde::Serialize;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output of a RUN.
    Stdout,
    /// Standard error of a RUN.
    Stderr,
}

/// One thing that happened during a build. Step numbers (`#N`) are unique per build.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A step (FROM, RUN, COPY, ADD, WORKDIR, or an internal step) began.
    StepStarted {
        /// `#N`.
        step: usize,
        /// `[stage k/n] INSTRUCTION`, as BuildKit names vertices.
        name: String,
    },
    /// The step was satisfied from the cache.
    StepCached {
        /// `#N`.
        step: usize,
        /// The step's name.
        name: String,
        /// The imported cache (`--cache-from`) the record came from, as the flag named it
        /// (`REG/REPO:TAG`, a directory); `None` for the local store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// The step must run; why its cache key changed.
    CacheMiss {
        /// `#N`.
        step: usize,
        /// `file app/main.py changed`, `build arg VERSION changed`, …
        reason: String,
    },
    /// One line of a RUN's output (never clipped).
    Log {
        /// `#N`.
        step: usize,
        /// Seconds since the step started.
        elapsed: f64,
        /// stdout or stderr.
        stream: LogStream,
        /// The line without its newline.
        line: String,
    },
    /// The step finished successfully.
    StepDone {
        /// `#N`.
        step: usize,
        /// Wall time.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// The step failed.
    StepFailed {
        /// `#N`.
        step: usize,
        /// The error, one line.
        error: String,
    },
    /// How RUN steps are isolated in this build, said once, before the first RUN runs.
    Isolation {
        /// `namespaces` or `chroot`.
        mode: String,
        /// Why the build settled for a weaker mode than the namespace sandbox (`--isolation
        /// auto`), in one line; `None` when it did not.
        reason: Option<String>,
    },
    /// A warning (unused build arg, fallback sandbox mode…).
    Warning {
        /// The message.
        message: String,
    },
    /// The image was pushed to a registry (`--push`, `type=image,push=true`).
    Pushed {
        /// The reference pushed to.
        reference: String,
    },
    /// The build finished: the image written.
    Finished {
        /// Manifest digest of the result.
        manifest_digest: String,
        /// Config digest (the image ID).
        config_digest: String,
        /// Wall time.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Receives events; must be cheap (called from build threads).
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event);
    }
}
