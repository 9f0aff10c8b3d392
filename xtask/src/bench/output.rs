//! Results: one section per benchmark, printed as a table and written, with every figure and the
//! machine description, to `target/bench/results.json`.

use std::{fmt::Write as _, path::Path};

use serde::Serialize;

/// How a figure compares with its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Goal met.
    Met,
    /// Goal missed.
    Missed,
    /// No goal (a figure for comparison).
    Info,
    /// Not measured (tool or feature unavailable).
    Skipped,
}

impl Verdict {
    /// From a goal test.
    pub fn goal(ok: bool) -> Self {
        if ok { Self::Met } else { Self::Missed }
    }

    fn mark(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::Info => "",
            Self::Skipped => "skipped",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured, e.g. "throughput veth (relative)".
    pub metric: String,
    /// Configuration: "monitor", "nethogs", ... or "-".
    pub config: String,
    /// The figure, formatted ("median (min–max)").
    pub value: String,
    /// The goal, if any.
    pub goal: String,
    /// Verdict.
    pub verdict: Verdict,
}

impl Row {
    /// A row without a goal.
    pub fn info(metric: impl Into<String>, config: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            config: config.into(),
            value: value.into(),
            goal: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A row with a goal.
    pub fn goal(
        metric: impl Into<String>,
        config: impl Into<String>,
        value: impl Into<String>,
        goal: &str,
        ok: bool,
    ) -> Self {
        Self {
            metric: metric.into(),
            config: config.into(),
            value: value.into(),
            goal: goal.to_owned(),
            verdict: Verdict::goal(ok),
        }
    }

    /// A skipped measurement.
    pub fn skipped(metric: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            config: "-".into(),
            value: reason.into(),
            goal: String::new(),
            verdict: Verdict::Skipped,
        }
    }
}

/// One benchmark's results.
#[derive(Debug, Serialize)]
pub struct Section {
    /// Short name ("throughput", "churn", ...).
    pub name: String,
    /// Table rows.
    pub rows: Vec<Row>,
    /// Every figure (samples, summaries, per-round details).
    pub data: serde_json::Value,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
    /// Set when the benchmark itself broke (the harness, not a figure).
    pub error: Option<String>,
    /// Wall-clock seconds the benchmark took.
    pub seconds: f64,
}

impl Section {
    /// An empty section.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            rows: Vec::new(),
            data: serde_json::Value::Null,
            notes: Vec::new(),
            error: None,
            seconds: 0.0,
        }
    }
}

/// Renders the table (plain text, aligned columns; Markdown-compatible).
pub fn table(sections: &[Section]) -> String {
    let header = ["benchmark", "metric", "config", "value: median (min–max)", "goal", "verdict"];
    let mut lines: Vec<[String; 6]> = Vec::new();
    for s in sections {
        if let Some(e) = &s.error {
            lines.push([s.name.clone(), "error".into(), "-".into(), e.clone(), String::new(), "ERROR".into()]);
        }
        for r in &s.rows {
            lines.push([
                s.name.clone(),
                r.metric.clone(),
                r.config.clone(),
                r.value.clone(),
                r.goal.clone(),
                r.verdict.mark().into(),
            ]);
        }
    }
    let mut widths = header.map(|h| h.chars().count());
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cells.iter().zip(widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", fmt(&header.map(String::from)));
    let _ = writeln!(out, "|{}", widths.iter().map(|w| format!("{}|", "-".repeat(w + 2))).collect::<String>());
    for l in &lines {
        let _ = writeln!(out, "{}", fmt(l));
    }
    for s in sections {
        for n in &s.notes {
            let _ = writeln!(out, "- {}: {n}", s.name);
        }
    }
    out
}

/// Writes `results` as pretty JSON to `path` (creating its directory).
pub fn write_json(path: &Path, results: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(results)? + "\n")?;
    Ok(())
}
