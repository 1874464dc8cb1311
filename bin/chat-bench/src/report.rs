//! A scenario's result, and its three renderings: the human summary, `--json`, and the
//! Markdown section appended by `--markdown-out`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::machine::Machine;
use crate::stats::{Latency, LatencySummary};

/// One scenario's figures. Built by the scenario, rendered here.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub parameters: Vec<Param>,
    pub figures: Vec<Figure>,
    pub latencies: Vec<NamedLatency>,
    pub checks: Vec<Check>,
    /// The server's figure as a fraction of the same machine's ceiling (`--with-baseline`).
    pub ceilings: Vec<Ceiling>,
    pub notes: Vec<String>,
    pub machine: Option<Machine>,
    /// Full distributions for `--plot`; not part of the JSON.
    #[serde(skip)]
    pub distributions: Vec<(String, Latency)>,
}

#[derive(Debug, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

#[derive(Debug, Serialize)]
pub struct NamedLatency {
    pub name: String,
    #[serde(flatten)]
    pub summary: LatencySummary,
}

/// A count that a correct server keeps at zero when `must_be_zero`.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub value: u64,
    pub must_be_zero: bool,
}

#[derive(Debug, Serialize)]
pub struct Ceiling {
    pub name: String,
    pub server: f64,
    pub ceiling: f64,
    pub unit: &'static str,
    /// `server / ceiling`.
    pub fraction: f64,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            parameters: Vec::new(),
            figures: Vec::new(),
            latencies: Vec::new(),
            checks: Vec::new(),
            ceilings: Vec::new(),
            notes: Vec::new(),
            machine: None,
            distributions: Vec::new(),
        }
    }

    // Taking the value (not a reference) keeps call sites short: `.param("members", 1000)`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn param(&mut self, name: &'static str, value: impl ToString) -> &mut Self {
        self.parameters.push(Param { name, value: value.to_string() });
        self
    }

    pub fn figure(&mut self, name: impl Into<String>, value: f64, unit: &'static str) -> &mut Self {
        self.figures.push(Figure { name: name.into(), value, unit });
        self
    }

    /// Adds the summary and keeps the distribution for `--plot`.
    pub fn latency(&mut self, name: impl Into<String>, latency: &Latency) -> &mut Self {
        let name = name.into();
        self.latencies.push(NamedLatency { name: name.clone(), summary: latency.summary() });
        if latency.count() > 0 {
            self.distributions.push((name, latency.clone()));
        }
        self
    }

    pub fn check(&mut self, name: &'static str, value: u64, must_be_zero: bool) -> &mut Self {
        self.checks.push(Check { name, value, must_be_zero });
        self
    }

    pub fn ceiling(&mut self, name: impl Into<String>, server: f64, ceiling: f64, unit: &'static str) -> &mut Self {
        let fraction = if ceiling > 0.0 { server / ceiling } else { 0.0 };
        self.ceilings.push(Ceiling { name: name.into(), server, ceiling, unit, fraction });
        self
    }

    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// Adds everything another report measured (a baseline run inside this one), its names
    /// prefixed.
    pub fn absorb(&mut self, prefix: &str, other: Report) {
        self.figures.extend(other.figures.into_iter().map(|f| Figure { name: format!("{prefix}{}", f.name), ..f }));
        self.latencies
            .extend(other.latencies.into_iter().map(|l| NamedLatency { name: format!("{prefix}{}", l.name), ..l }));
        self.distributions
            .extend(other.distributions.into_iter().map(|(name, latency)| (format!("{prefix}{name}"), latency)));
        self.notes.extend(other.notes);
    }

    /// False when a must-be-zero check is not zero.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| !c.must_be_zero || c.value == 0)
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        // One column width for every name, so that values line up however long names get.
        let width = self
            .figures
            .iter()
            .map(|f| f.name.chars().count())
            .chain(self.latencies.iter().map(|l| l.name.chars().count()))
            .chain(self.checks.iter().map(|c| c.name.chars().count()))
            .chain(self.ceilings.iter().map(|c| c.name.chars().count()))
            .max()
            .unwrap_or(0)
            .max(30);
        let _ = writeln!(out, "chat-bench {}", self.scenario);
        if !self.parameters.is_empty() {
            let params: Vec<String> = self.parameters.iter().map(|p| format!("{}={}", p.name, p.value)).collect();
            let _ = writeln!(out, "  parameters: {}", params.join(" "));
        }
        for figure in &self.figures {
            let _ = writeln!(out, "  {:<width$} {:>14} {}", figure.name, format_number(figure.value), figure.unit);
        }
        if !self.latencies.is_empty() {
            let _ = writeln!(
                out,
                "  {:<width$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            );
            for latency in &self.latencies {
                let s = &latency.summary;
                let _ = writeln!(
                    out,
                    "  {:<width$} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                    latency.name, s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
                );
            }
        }
        for check in &self.checks {
            let verdict = match (check.must_be_zero, check.value) {
                (false, _) => "",
                (true, 0) => "  ok (must be 0)",
                (true, _) => "  FAILED (must be 0)",
            };
            let _ = writeln!(out, "  {:<width$} {:>14}{verdict}", check.name, check.value);
        }
        for ceiling in &self.ceilings {
            let _ = writeln!(
                out,
                "  {:<width$} {:>13.1}% of ceiling ({} / {} {})",
                ceiling.name,
                ceiling.fraction * 100.0,
                format_number(ceiling.server),
                format_number(ceiling.ceiling),
                ceiling.unit
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }

    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let date = self.machine.as_ref().map_or("", |m| m.date.as_str());
        let _ = writeln!(out, "## chat-bench {} — {date}\n", self.scenario);
        if let Some(machine) = &self.machine {
            let _ = writeln!(out, "- Command: `{}`", machine.command_line);
            let _ = writeln!(out, "- Machine: {}, nproc {}", machine.cpu_model, machine.nproc);
            let _ = writeln!(out, "- Date: {}", machine.date);
            let _ = writeln!(out, "- Commit: {}", machine.git_commit.as_deref().unwrap_or("unknown"));
        }
        out.push('\n');
        if !self.figures.is_empty() {
            out.push_str("| figure | value | unit |\n|---|---:|---|\n");
            for figure in &self.figures {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    escape_cell(&figure.name),
                    format_number(figure.value),
                    figure.unit
                );
            }
            out.push('\n');
        }
        if !self.latencies.is_empty() {
            out.push_str(
                "| latency (ms) | count | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|\n",
            );
            for latency in &self.latencies {
                let s = &latency.summary;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    escape_cell(&latency.name),
                    s.count,
                    s.p50_ms,
                    s.p90_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.max_ms
                );
            }
            out.push('\n');
        }
        if !self.checks.is_empty() {
            out.push_str("| check | value | expected |\n|---|---:|---|\n");
            for check in &self.checks {
                let expected = if check.must_be_zero { "0" } else { "—" };
                let _ = writeln!(out, "| {} | {} | {expected} |", check.name, check.value);
            }
            out.push('\n');
        }
        if !self.ceilings.is_empty() {
            out.push_str("| server vs ceiling | server | ceiling | unit | fraction |\n|---|---:|---:|---|---:|\n");
            for c in &self.ceilings {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} % |",
                    escape_cell(&c.name),
                    format_number(c.server),
                    format_number(c.ceiling),
                    c.unit,
                    c.fraction * 100.0
                );
            }
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- Note: {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Appends the report's Markdown section to `path`, creating the file if needed.
pub fn append_markdown(path: &Path, report: &Report) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let section = report.render_markdown();
    // A blank line keeps the new heading separate from whatever the file ended with.
    let needs_gap = file.metadata().is_ok_and(|m| m.len() > 0);
    if needs_gap {
        file.write_all(b"\n")?;
    }
    file.write_all(section.as_bytes()).with_context(|| format!("cannot write to {}", path.display()))
}

/// Integers without decimals, small values with up to three.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn escape_cell(text: &str) -> String {
    text.replace('|', r"\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut latency = Latency::new();
        for us in 1..=1000 {
            latency.record_us(us);
        }
        let mut report = Report::new("fanout");
        report
            .param("members", 1000)
            .figure("deliveries/s", 49_800.5, "1/s")
            .figure("messages sent", 750.0, "")
            .latency("send→receive", &latency)
            .check("lost", 0, true)
            .check("duplicated", 0, true)
            .check("reconnects", 3, false)
            .ceiling("deliveries/s", 49_800.0, 99_600.0, "1/s")
            .note("rate limits were off");
        report.machine = Some(Machine {
            nproc: 2,
            cpu_model: "Test CPU".into(),
            date: "2025-01-09T12:00:00Z".into(),
            git_commit: Some("abc1234".into()),
            command_line: "chat-bench fanout --members 1000".into(),
        });
        report
    }

    #[test]
    fn markdown_section_states_command_machine_date_commit_and_figures() {
        let markdown = sample().render_markdown();
        for expected in [
            "## chat-bench fanout — 2025-01-09T12:00:00Z\n",
            "- Command: `chat-bench fanout --members 1000`",
            "- Machine: Test CPU, nproc 2",
            "- Date: 2025-01-09T12:00:00Z",
            "- Commit: abc1234",
            "| deliveries/s | 49800.5 | 1/s |",
            "| messages sent | 750 |  |",
            "| send→receive | 1000 | 0.500 | 0.900 | 0.990 | 0.999 | 1.000 |",
            "| lost | 0 | 0 |",
            "| reconnects | 3 | — |",
            "| deliveries/s | 49800 | 99600 | 1/s | 50.0 % |",
            "- Note: rate limits were off",
        ] {
            assert!(markdown.contains(expected), "missing {expected:?} in\n{markdown}");
        }
    }

    #[test]
    fn text_summary_flags_failed_checks() {
        let mut report = sample();
        assert!(report.passed());
        let text = report.render_text();
        assert!(text.contains("ok (must be 0)"), "{text}");
        assert!(text.contains("50.0% of ceiling"), "{text}");
        report.check("lost", 2, true);
        assert!(!report.passed());
        assert!(report.render_text().contains("FAILED (must be 0)"));
    }

    #[test]
    fn json_has_the_summary_but_not_the_raw_distribution() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["scenario"], "fanout");
        assert_eq!(json["latencies"][0]["name"], "send→receive");
        assert_eq!(json["latencies"][0]["count"], 1000);
        assert_eq!(json["checks"][0]["must_be_zero"], true);
        assert_eq!(json["ceilings"][0]["fraction"], 0.5);
        assert!(json.get("distributions").is_none());
    }

    #[test]
    fn markdown_is_appended_not_overwritten() {
        let path = std::env::temp_dir().join(format!("chat-bench-md-{}.md", std::process::id()));
        std::fs::write(&path, "# Benchmarks\n").unwrap();
        append_markdown(&path, &sample()).unwrap();
        append_markdown(&path, &sample()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(text.starts_with("# Benchmarks\n\n## chat-bench fanout"));
        assert_eq!(text.matches("## chat-bench fanout").count(), 2);
    }

    #[test]
    fn absorbed_baseline_figures_are_prefixed() {
        let mut report = Report::new("fanout");
        let mut baseline = Report::new("baseline");
        baseline.figure("inserts/s", 1000.0, "1/s");
        report.absorb("baseline: ", baseline);
        assert_eq!(report.figures[0].name, "baseline: inserts/s");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(1234.56), "1234.6");
        assert_eq!(format_number(0.5), "0.500");
    }
}
