//! Memory the process has freed, given back to the operating system.
//!
//! glibc's `malloc` keeps freed memory for reuse in its free lists, and returns
//! it by itself only from the top of the heap. After a load, a resync or a
//! compaction, the pages read or written, the buffers of the bulk build and a
//! replaced state are freed in the middle of the heap: a 3M-membership tenant
//! stayed at 165 MiB resident after a restart and 171 MiB after a resync, where
//! the state needs about 154. `malloc_trim` hands whole free pages back
//! (`madvise`); it is called once after such a step, not per call.
//!
//! The one `unsafe` block of the workspace is here (the lint is `deny`, not
//! `forbid`, so that it can be allowed here and nowhere else).

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
