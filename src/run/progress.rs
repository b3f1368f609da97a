//! The terminal progress bar and the closing one-line summary.

/// A terminal progress bar: steps, steps/s and the recent episodic return. Hidden when stderr is
/// not a terminal.
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar for `total` steps.
    pub fn new(total: u64) -> Self {
        Self::with_unit(total, "steps")
    }

    /// A bar for `total` of `unit` (e.g. "epochs").
    pub fn with_unit(total: u64, unit: &str) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        let template = format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}) {{msg}}");
        let style = indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Self { bar }
    }

    /// A bar that draws nothing (tests, `--no-progress`).
    pub fn hidden() -> Self {
        Self { bar: indicatif::ProgressBar::hidden() }
    }

    /// Moves the bar to `step`, showing the recent return when known.
    pub fn update(&self, step: u64, recent_return: Option<f64>) {
        self.bar.set_position(step);
        if let Some(r) = recent_return {
            self.bar.set_message(format!("return {r:.1}"));
        }
    }

    /// Shows a message after the counters (e.g. the last evaluation).
    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Formats a summary as one line: `key=value` pairs in the JSON object's order.
pub fn summary_line(summary: &serde_json::Value) -> String {
    match summary.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(x) if v.is_f64() => format!("{k}={x:.3}"),
                _ => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => summary.to_string(),
    }
}
