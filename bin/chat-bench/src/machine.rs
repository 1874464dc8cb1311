//! Facts about this run that every report states: the machine, the date, the commit, the
//! command line, and memory use read from `/proc`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub date: String,
    pub git_commit: Option<String>,
    pub command_line: String,
}

impl Machine {
    pub fn collect(args: &[String]) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| cpu_model_from(&info))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model,
            date: OffsetDateTime::now_utc()
                .format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
                .unwrap_or_else(|_| "unknown date".to_owned()),
            git_commit: git_commit(),
            command_line: shell_words(args),
        }
    }
}

/// The first `model name` line of `/proc/cpuinfo`.
pub fn cpu_model_from(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// `CHAT_BENCH_COMMIT` when set (`just bench` sets it to the server's commit when it runs
/// an older server), else `git rev-parse --short HEAD` in the current directory, else beside
/// the executable (so a run from elsewhere of `target/release/chat-bench` still names its
/// commit).
fn git_commit() -> Option<String> {
    if let Some(commit) = std::env::var("CHAT_BENCH_COMMIT").ok().filter(|c| !c.is_empty()) {
        return Some(commit);
    }
    let exe_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
    std::iter::once(None).chain(exe_dir.map(Some)).find_map(|dir| rev_parse(dir.as_deref()))
}

fn rev_parse(dir: Option<&Path>) -> Option<String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    let output = command.args(["rev-parse", "--short", "HEAD"]).stderr(std::process::Stdio::null()).output().ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

/// The command line as a shell would need it typed: arguments with special characters are
/// single-quoted.
pub fn shell_words(args: &[String]) -> String {
    args.iter().map(|arg| shell_quote(arg)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: &str) -> Result<u64> {
    let path = Path::new("/proc").join(pid).join("status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    rss_kib_from_status(&status).with_context(|| format!("no VmRSS line in {}", path.display()))
}

/// Reads the `VmRSS:   1234 kB` line of a `/proc/<pid>/status` file.
pub fn rss_kib_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model_from(info).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model_from("processor : 0\n"), None);
    }

    #[test]
    fn rss_is_read_from_the_status_file() {
        let status = "Name:\tchat-server\nVmPeak:\t  999 kB\nVmRSS:\t   52344 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(rss_kib_from_status(status), Some(52_344));
        assert_eq!(rss_kib_from_status("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib("self").unwrap() > 0);
    }

    #[test]
    fn command_lines_are_quoted_for_the_shell() {
        let args: Vec<String> =
            ["chat-bench", "fanout", "--url", "http://127.0.0.1:8000", "--plot", "my plot.svg", "it's", ""]
                .map(str::to_owned)
                .to_vec();
        assert_eq!(
            shell_words(&args),
            r"chat-bench fanout --url http://127.0.0.1:8000 --plot 'my plot.svg' 'it'\''s' ''"
        );
    }
}
