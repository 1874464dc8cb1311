//! A fresh clone stands on its own: no file of the repository points at documents that live
//! outside it (the contract drafts this project started from were kept in a directory beside
//! the checkout). The project's own descriptions are `docs/api.md`, `docs/websocket.md`,
//! the README and the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Spelled in pieces so this file does not find itself.
const DANGLING: [&str; 3] = [concat!("../", "shared"), concat!("API", ".md"), concat!("SEED", ".md")];

/// Build output, local state and third-party installs: not part of a clone.
const SKIPPED_DIRS: [&str; 8] =
    [".git", "target", "data", "node_modules", "corpus", "artifacts", ".hypothesis", ".schemathesis"];

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every text file under `dir`, skipping the directories above and virtual environments.
fn text_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) && !name.starts_with(".venv") {
                text_files(&path, found);
            }
        } else if std::fs::read_to_string(&path).is_ok() {
            found.push(path);
        }
    }
}

#[test]
fn no_file_refers_to_documents_outside_the_repository() {
    let root = repository_root();
    let mut files = Vec::new();
    text_files(&root, &mut files);
    // README, justfile, docker/, docs/, scripts/, .ci/, the sources and their comments.
    for expected in
        ["README.md", "justfile", "docker/Dockerfile", "docs/api.md", ".ci/run", "crates/http-api/src/app.rs"]
    {
        assert!(files.contains(&root.join(expected)), "{expected} is searched");
    }
    let mut dangling = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if DANGLING.iter().any(|needle| line.contains(needle)) {
                dangling.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(&root).unwrap().display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        dangling.is_empty(),
        "references to documents that are not in the repository (point to docs/api.md, docs/websocket.md or the README instead):\n{}",
        dangling.join("\n")
    );
}

#[test]
fn the_project_documents_it_links_to_exist() {
    let root = repository_root();
    for document in ["docs/api.md", "docs/websocket.md", "README.md", "ARCHITECTURE.md"] {
        assert!(root.join(document).is_file(), "{document}");
    }
    // Relative Markdown links of the README and docs/ lead to files that exist.
    for page in ["README.md", "docs/api.md", "docs/websocket.md"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let dir = root.join(page).parent().unwrap().to_path_buf();
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            let target = link.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(dir.join(target).exists(), "{page} links to {link}, which does not exist");
        }
    }
}
