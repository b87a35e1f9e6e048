//! Memory the process has freed, given back to the operating system.
//!
//! glibc's `malloc` keeps freed memory for reuse in its free lists, and returns
//! it by itself only from the top of the heap. After a load or a resync, the
//! pages read, the buffers of the bulk build and a replaced state are freed in the
//! middle of the heap, and so are the outgrown lists of a burst of changes: a
//! 3M-membership tenant stayed at 165 MiB resident after a restart and 171 MiB
//! after a resync, where the state needs about 154; a 100k tenant loaded
//! through the API at 30 MiB. `malloc_trim` hands whole free pages back
//! (`madvise`). It is called once after a load or a snapshot, and when a burst
//! of change sets is over ([`after_bursts`]), never on a call's path.
//!
//! The one `unsafe` block of the workspace is here (the lint is `deny`, not
//! `forbid`, so that it can be allowed here and nowhere else).

use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// How often [`after_bursts`] looks whether change sets are still coming.
pub const BURST_CHECK: Duration = Duration::from_secs(2);

/// Runs `give_back` (on a blocking thread) once a burst of change sets is over:
/// when `applied` (a count of change sets applied) has moved since the last
/// give-back but not since the last look, [`BURST_CHECK`] ago. A steady stream
/// of changes is given back to when it pauses; a quiet service never.
pub async fn after_bursts(applied: impl Fn() -> u64, give_back: fn()) {
    let mut ticks = tokio::time::interval(BURST_CHECK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut given_back_at = applied();
    let mut last_seen = given_back_at;
    loop {
        ticks.tick().await;
        let now = applied();
        if now != given_back_at && now == last_seen {
            // A failed blocking task (a panic) leaves nothing to undo.
            let _ = tokio::task::spawn_blocking(give_back).await;
            given_back_at = now;
        }
        last_seen = now;
    }
}

/// Gives whole free pages of the heap back to the operating system (glibc only;
/// elsewhere it does nothing). It walks and locks every arena in turn (tens of
/// milliseconds for a few hundred MiB): call it from a blocking thread, after a
/// large step, not on a call's path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim is a C function")]
pub fn return_freed_memory() {
    // SAFETY: malloc_trim takes no pointer and only touches the allocator's own
    // state, under its locks; any thread may call it at any time.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "gave freed memory back to the operating system");
}

/// Elsewhere (musl, other systems) there is no such call, and nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    static GIVEN_BACK: AtomicU64 = AtomicU64::new(0);

    fn count_give_back() {
        GIVEN_BACK.fetch_add(1, Ordering::SeqCst);
    }

    /// Memory goes back once per burst, after it: not while changes keep
    /// coming, and not again while nothing happens.
    #[tokio::test(start_paused = true)]
    async fn freed_memory_goes_back_once_a_burst_is_over() {
        let applied = Arc::new(AtomicU64::new(0));
        let count = applied.clone();
        let task = tokio::spawn(after_bursts(
            move || count.load(Ordering::SeqCst),
            count_give_back,
        ));
        let given_back = || GIVEN_BACK.load(Ordering::SeqCst);
        let wait = |checks: u32| tokio::time::sleep(BURST_CHECK * checks + BURST_CHECK / 2);
        wait(3).await;
        assert_eq!(given_back(), 0, "nothing applied, nothing given back");
        // A burst across several looks: nothing given back while it lasts.
        for _ in 0..5 {
            applied.fetch_add(10, Ordering::SeqCst);
            tokio::time::sleep(BURST_CHECK).await;
        }
        assert_eq!(given_back(), 0, "given back during the burst");
        wait(2).await;
        assert_eq!(given_back(), 1, "given back once the burst was over");
        wait(5).await;
        assert_eq!(given_back(), 1, "given back again with nothing new");
        applied.fetch_add(1, Ordering::SeqCst);
        wait(3).await;
        assert_eq!(given_back(), 2, "a second burst, a second give-back");
        task.abort();
    }
}
