//! What a run shows on the terminal: a progress bar with the last logged terms, and lines
//! printed above it (nothing but errors with `--quiet`).
use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A bar of `total` steps standing at `position`.
    pub fn new(total: u64, position: u64, quiet: bool) -> Self {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(position);
        Progress { bar, quiet }
    }

    /// Prints a line above the bar.
    pub fn say(&self, line: String) {
        if !self.quiet {
            self.bar.println(line);
        }
    }

    pub fn set_position(&self, step: u64) {
        self.bar.set_position(step);
    }

    /// Shows the loss, accuracy, energy gap and throughput of the last log step beside the bar.
    pub fn show(&self, logs: &[(String, f64)], images_per_second: f64) {
        let get = |k: &str| logs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let mut msg = format!("loss {:.4}", get("loss").unwrap_or(f64::NAN));
        if let Some(a) = get("acc") {
            msg += &format!(" acc {:.3}", a);
        }
        if let Some(g) = get("gap") {
            msg += &format!(" E(data)-E(samples) {:+.4}", g);
        }
        msg += &format!(" {:.0} img/s", images_per_second);
        self.bar.set_message(msg);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
