//! The log writer for busy servers: formatted lines are appended to a shared
//! buffer, and a background thread writes the buffer out every
//! [`FLUSH_INTERVAL`], or at once when it passes [`EAGER_FLUSH_BYTES`].
//!
//! Why not a channel with a writer thread (`tracing_appender::non_blocking`)?
//! That thread sleeps whenever the channel runs empty, so at tens of thousands
//! of calls a second each line paid a futex wake-up and two context switches:
//! profiled under `Check` load, the writer thread and the wake-ups took about a
//! tenth of the authorization service's CPU. Here a line costs an uncontended
//! lock and a copy, and the writer wakes some fifty times a second.
//!
//! Lines reach stderr at most [`FLUSH_INTERVAL`] late; dropping the
//! [`BatchedLogGuard`] writes out what is buffered. A writer that falls
//! [`MAX_BUFFERED_BYTES`] behind (stderr blocked) drops lines rather than hold up
//! calls, and says how many it dropped once it can write again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How late a line may reach the output.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A buffer this large is written out without waiting for the interval.
pub const EAGER_FLUSH_BYTES: usize = 256 * 1024;
/// Beyond this much unwritten output, new lines are dropped (and counted).
pub const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped_lines: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the buffer passes [`EAGER_FLUSH_BYTES`] and at close.
    flush_now: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A writer that panicked mid-append left at worst a partial line.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A [`MakeWriter`] whose lines are written by a background thread.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Stops the background thread, after it has written everything buffered.
#[must_use = "lines still buffered are written when the guard drops"]
pub struct BatchedLogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedWriter {
    /// A writer whose lines go to `output`, and the guard that flushes it.
    pub fn new(output: impl Write + Send + 'static) -> (Self, BatchedLogGuard) {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_out(&shared, output)
            })
            .expect("the log writer thread starts");
        (
            Self {
                shared: shared.clone(),
            },
            BatchedLogGuard {
                shared,
                thread: Some(thread),
            },
        )
    }
}

fn write_out(shared: &Shared, mut output: impl Write) {
    let mut spare = Vec::new();
    loop {
        let (closed, dropped_lines) = {
            let mut pending = shared.lock();
            if !pending.closed && pending.bytes.len() < EAGER_FLUSH_BYTES {
                pending = shared
                    .flush_now
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.bytes, &mut spare);
            (pending.closed, std::mem::take(&mut pending.dropped_lines))
        };
        // Output errors have nowhere to be reported but the output itself.
        let _ = output.write_all(&spare);
        if dropped_lines > 0 {
            let _ = writeln!(
                output,
                "log writer: {dropped_lines} lines dropped while the output was blocked"
            );
        }
        let _ = output.flush();
        spare.clear();
        if closed {
            return;
        }
    }
}

impl Drop for BatchedLogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.flush_now.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line being written (the formatter writes each line with one call).
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.bytes.len() + line.len() > MAX_BUFFERED_BYTES {
            pending.dropped_lines += 1;
            return Ok(line.len());
        }
        let was_below = pending.bytes.len() < EAGER_FLUSH_BYTES;
        pending.bytes.extend_from_slice(line);
        if was_below && pending.bytes.len() >= EAGER_FLUSH_BYTES {
            self.shared.flush_now.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_and_in_each_writers_order_by_the_time_the_guard_drops() {
        let output = Captured::default();
        let (writer, guard) = BatchedWriter::new(output.clone());
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = &writer;
                scope.spawn(move || {
                    for line in 0..20_000 {
                        let text = format!("thread {thread} line {line} {}\n", "x".repeat(40));
                        writer.make_writer().write_all(text.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let written = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in written.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 5, "a torn line: {line:?}");
            let thread: usize = words[1].parse().unwrap();
            assert_eq!(words[3].parse::<usize>().unwrap(), next[thread]);
            next[thread] += 1;
        }
        assert_eq!(next, [20_000; 4]);
    }

    #[test]
    fn a_line_reaches_the_output_within_the_flush_interval_without_a_drop() {
        let output = Captured::default();
        let (writer, _guard) = BatchedWriter::new(output.clone());
        writer.make_writer().write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while output.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(output.0.lock().unwrap().as_slice(), b"hello\n");
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_counted() {
        // An output that blocks until the test lets it go.
        struct Blocked(Arc<(Mutex<bool>, Condvar)>, Captured);
        impl Write for Blocked {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let (open, opened) = &*self.0;
                let _open = opened
                    .wait_while(open.lock().unwrap(), |open| !*open)
                    .unwrap();
                self.1.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let output = Captured::default();
        let (writer, guard) = BatchedWriter::new(Blocked(gate.clone(), output.clone()));
        // One line gets taken by the blocked writer; the rest fill the buffer.
        let line = vec![b'x'; 1024 * 1024 - 1]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        writer.make_writer().write_all(&line).unwrap();
        std::thread::sleep(FLUSH_INTERVAL * 3);
        let lines = MAX_BUFFERED_BYTES / line.len() + 5;
        for _ in 0..lines {
            writer.make_writer().write_all(&line).unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let written = output.0.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&written);
        let whole_lines = written.iter().filter(|b| **b == b'\n').count() - 1;
        assert!(
            text.contains("log writer: 5 lines dropped while the output was blocked"),
            "{whole_lines} lines and no count of the dropped ones"
        );
        assert_eq!(whole_lines, 1 + lines - 5);
    }
}
