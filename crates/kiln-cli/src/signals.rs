//! SIGINT, SIGTERM and SIGHUP turned into cancellation, for the commands that must clean up
//! (a build removes its staging directories, `kiln run` tears its sandbox down).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Context as _;
use kiln_build::CancelToken;

/// Cancels `token` on SIGINT, SIGTERM or SIGHUP, so the work stops between steps and cleans up
/// instead of dying mid-write; the returned cell then holds the signal number. `thread` names
/// the watcher thread.
pub(crate) fn cancel_on_signals(
    token: CancelToken,
    thread: &str,
) -> anyhow::Result<Arc<AtomicI32>> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal handler")?;
    let (mut int, mut term, mut hup) = {
        let _context = runtime.enter();
        let install = |kind| signal(kind).context("installing the signal handlers");
        (
            install(SignalKind::interrupt())?,
            install(SignalKind::terminate())?,
            install(SignalKind::hangup())?,
        )
    };
    let caught = Arc::new(AtomicI32::new(0));
    let cell = Arc::clone(&caught);
    std::thread::Builder::new()
        .name(thread.to_owned())
        .spawn(move || {
            let kind = runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => SignalKind::interrupt(),
                    _ = term.recv() => SignalKind::terminate(),
                    _ = hup.recv() => SignalKind::hangup(),
                }
            });
            cell.store(kind.as_raw_value(), Ordering::SeqCst);
            token.cancel();
        })
        .context("starting the signal handler thread")?;
    Ok(caught)
}
