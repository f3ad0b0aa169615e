//! A one-line progress bar on stderr (bytes, percentage, speed, ETA), redrawn a few times a
//! second by its own thread so the download loops only bump an atomic counter. Silent when
//! stderr is not a terminal, so logs and CI output stay clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Shared {
    label: String,
    total: u64,
    done: AtomicU64,
    finished: AtomicBool,
    wake: (Mutex<()>, Condvar),
}

/// A progress bar for one transfer. Cheap to clone into worker threads via [`Bar::counter`].
pub struct Bar {
    shared: Arc<Shared>,
    drawer: Option<JoinHandle<()>>,
}

/// A handle worker threads use to report bytes.
#[derive(Clone)]
pub struct Counter(Arc<Shared>);

impl Counter {
    /// Adds `n` bytes done.
    pub fn add(&self, n: u64) {
        self.0.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Removes `n` bytes (a part restarted from an earlier offset).
    pub fn sub(&self, n: u64) {
        self.0.done.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes done so far.
    pub fn get(&self) -> u64 {
        self.0.done.load(Ordering::Relaxed)
    }
}

impl Bar {
    /// A bar for `total` bytes of `label`, `already` of them done before this run. Draws only
    /// when `enabled` and stderr is a terminal.
    pub fn new(label: &str, total: u64, already: u64, enabled: bool) -> Bar {
        let shared = Arc::new(Shared {
            label: label.to_string(),
            total,
            done: AtomicU64::new(already),
            finished: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let drawer = if enabled && std::io::stderr().is_terminal() {
            let s = shared.clone();
            Some(std::thread::spawn(move || draw_loop(&s, already)))
        } else {
            None
        };
        Bar { shared, drawer }
    }

    /// A handle for worker threads.
    pub fn counter(&self) -> Counter {
        Counter(self.shared.clone())
    }

    /// Stops drawing and leaves the final line on screen.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.finished.store(true, Ordering::Relaxed);
        self.shared.wake.1.notify_all();
        if let Some(h) = self.drawer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop();
    }
}

fn draw_loop(s: &Shared, start_bytes: u64) {
    let start = Instant::now();
    loop {
        let finished = s.finished.load(Ordering::Relaxed);
        let line = render(
            &s.label,
            s.done.load(Ordering::Relaxed),
            s.total,
            start_bytes,
            start.elapsed(),
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        if finished {
            let _ = writeln!(err);
            return;
        }
        let _ = err.flush();
        drop(err);
        let guard = s.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s
            .wake
            .1
            .wait_timeout(guard, Duration::from_millis(200))
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// One line: `label  [=====>    ]  42%  12.0 MiB/120.0 MiB  8.1 MiB/s  ETA 13s`.
pub fn render(label: &str, done: u64, total: u64, start_bytes: u64, elapsed: Duration) -> String {
    const WIDTH: usize = 24;
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (frac * WIDTH as f64) as usize;
    let mut bar = "=".repeat(filled);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH - filled - 1));
    }
    let secs = elapsed.as_secs_f64();
    let moved = done.saturating_sub(start_bytes);
    let speed = if secs > 0.2 { moved as f64 / secs } else { 0.0 };
    let eta = if speed > 0.0 && done < total {
        format_duration((total - done) as f64 / speed)
    } else {
        "-".into()
    };
    format!(
        "{label}  [{bar}] {:>3}%  {}/{}  {}/s  ETA {eta}",
        (frac * 100.0) as u32,
        format_bytes(done),
        format_bytes(total),
        format_bytes(speed as u64)
    )
}

/// `1.5 GiB`-style sizes.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_speed_and_eta() {
        let line = render("model.gguf", 50 << 20, 100 << 20, 0, Duration::from_secs(5));
        assert!(line.contains(" 50%"), "{line}");
        assert!(line.contains("50.0 MiB/100.0 MiB"), "{line}");
        assert!(line.contains("10.0 MiB/s"), "{line}");
        assert!(line.contains("ETA 5s"), "{line}");
        let done = render("x", 10, 10, 0, Duration::from_secs(1));
        assert!(done.contains("100%") && done.contains("ETA -"), "{done}");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_duration(3725.0), "1h02m");
    }
}
