//! The log's way to standard error: a worker appends its line to a buffer
//! (a lock held for a copy) and a thread of its own writes the buffer out
//! every `EVERY`, in one `write`, or sooner when it fills.
//!
//! tracing-appender's writer, used before, handed each line through a
//! channel whose thread slept between lines: at a request a millisecond
//! or so, each access-log line woke that thread (a futex call on the
//! worker, a thread switch, a spin of `sched_yield`), about 10 µs of CPU a
//! request at c=1 (`docs/performance.md`). On a timer, lines wait at most
//! `EVERY` and no line wakes anyone. No line is dropped: past `MAX` bytes
//! waiting (standard error not read, a disk that stalls) a worker waits for
//! the writer, as it would on a blocking `write`.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait to be written.
const EVERY: Duration = Duration::from_millis(50);
/// Past this much waiting, the writer is woken at once.
const SOON: usize = 256 << 10;
/// Past this much waiting, a worker waits for the writer.
const MAX: usize = 4 << 20;

#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    /// The writer's wake-up: `SOON` passed, or the log closed.
    to_writer: Condvar,
    /// The workers' wake-up: the writer took what was waiting.
    to_workers: Condvar,
}

#[derive(Default)]
struct Waiting {
    bytes: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writing end the log's formatter gets for each line.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

/// Writes what is left, and ends the writer's thread, when dropped (at the
/// end of `main`).
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A log writing into `out` from a thread named `name`.
pub fn start(out: impl Write + Send + 'static, name: &str) -> std::io::Result<(LogWriter, Guard)> {
    let shared = Arc::new(Shared::default());
    let theirs = shared.clone();
    let thread =
        std::thread::Builder::new().name(name.into()).spawn(move || write_out(&theirs, out))?;
    Ok((LogWriter(shared.clone()), Guard { shared, thread: Some(thread) }))
}

/// The writer's loop: what waits, written every `EVERY` or when there is
/// `SOON` of it, until the log is closed and nothing is left.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut taken = Vec::new();
    loop {
        let mut waiting = shared.lock();
        if waiting.bytes.len() < SOON && !waiting.closed {
            waiting = shared
                .to_writer
                .wait_timeout(waiting, EVERY)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        std::mem::swap(&mut taken, &mut waiting.bytes);
        let closed = waiting.closed;
        drop(waiting);
        shared.to_workers.notify_all();
        if !taken.is_empty() {
            // A log that cannot be written has nowhere to say so.
            let _ = out.write_all(&taken).and_then(|()| out.flush());
            taken.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut waiting = self.0.lock();
        while waiting.bytes.len() >= MAX && !waiting.closed {
            waiting =
                self.0.to_workers.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        waiting.bytes.extend_from_slice(line);
        if waiting.bytes.len() >= SOON {
            self.0.to_writer.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.to_writer.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes a test can read, counting its writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_in_order_in_few_writes_and_the_guard_writes_the_rest() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone(), "test log").unwrap();
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000 {
                        writer.write_all(format!("worker {w} line {n}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        for w in 0..4 {
            let lines: Vec<&str> =
                text.lines().filter(|l| l.starts_with(&format!("worker {w} "))).collect();
            let expected: Vec<String> =
                (0..20_000).map(|n| format!("worker {w} line {n}")).collect();
            assert_eq!(lines, expected, "worker {w}'s lines, whole and in order");
        }
        assert_eq!(text.lines().count(), 80_000);
        assert!(writes < 1_000, "{writes} writes for 80,000 lines");
    }

    #[test]
    fn a_line_is_written_within_a_tick_without_waking_anyone() {
        let sink = Sink::default();
        let (mut writer, _guard) = start(sink.clone(), "test log").unwrap();
        writer.write_all(b"one line\n").unwrap();
        let until = std::time::Instant::now() + EVERY * 10;
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < until, "the line waited past ten ticks");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"one line\n");
    }

    /// A writer that cannot write (standard error not read): workers wait
    /// past `MAX`, nothing grows past it, and nothing is lost once it can.
    #[test]
    fn a_stalled_output_holds_workers_at_the_bound_and_loses_nothing() {
        #[derive(Clone)]
        struct Gate(Arc<(Mutex<bool>, Condvar)>, Sink);
        impl Write for Gate {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let (open, opened) = &*self.0;
                let mut guard = open.lock().unwrap();
                while !*guard {
                    guard = opened.wait(guard).unwrap();
                }
                self.1.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Gate(Arc::default(), Sink::default());
        let (writer, guard) = start(gate.clone(), "test log").unwrap();
        let line = [b'x'; 1023].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let lines = 3 * MAX / line.len();
        let worker = {
            let (mut writer, line) = (writer.clone(), line.clone());
            std::thread::spawn(move || (0..lines).for_each(|_| writer.write_all(&line).unwrap()))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!worker.is_finished(), "the worker waits for the stalled output");
        assert!(writer.0.lock().bytes.len() <= MAX + line.len());
        *gate.0.0.lock().unwrap() = true;
        gate.0.1.notify_all();
        worker.join().unwrap();
        drop(guard);
        assert_eq!(gate.1.0.lock().unwrap().0.len(), lines * line.len());
    }
}
