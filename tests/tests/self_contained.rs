//! The repository stands on its own: a stranger who clones it has everything it refers to.
//! No tracked file points at material kept outside it (the team's private reference notes, a
//! sibling checkout), and every relative link in the README, CONTRIBUTING.md and docs/ leads to
//! a tracked file (and, into a Markdown page, to one of its headings).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path};
use std::process::Command;

/// Phrases that only make sense to someone holding material outside the repository. Each is
/// built with `concat!`, so this file does not contain them.
const OUTSIDE: [&str; 13] = [
    concat!("..", "/shared"),
    concat!("/work", "/shared"),
    concat!("DESIGN", " §"),
    concat!("DESIGN", ".md"),
    concat!("design", " folder"),
    concat!("hotmart-", "webhooks.md"),
    concat!("talentlms-", "api.md"),
    concat!("hotmart-", "api.md"),
    concat!("moodle-", "api.md"),
    concat!("gcp-", "facts.md"),
    concat!("stripe-", "webhooks.md"),
    concat!("standard-", "webhooks.md"),
    concat!("facts", " §"),
];

/// Generated lock files: long, machine-written, and not ours to word.
const NOT_READ: [&str; 2] = ["Cargo.lock", "package-lock.json"];

/// The files git tracks, relative to the repository root.
fn tracked() -> Vec<String> {
    let root = lms_bridge_tests::repo_root();
    let output = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run git ls-files (is git installed, is this a git checkout?): {e}"));
    assert!(output.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&output.stderr));
    let list = String::from_utf8(output.stdout).unwrap();
    list.split('\0').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// A tracked file's text; `None` for binary or non-UTF-8 files, and for a tracked file deleted
/// from the working tree.
fn text(path: &str) -> Option<String> {
    let bytes = std::fs::read(lms_bridge_tests::repo_root().join(path)).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[test]
fn no_tracked_file_refers_to_material_outside_the_repository() {
    let mut found = Vec::new();
    for path in tracked() {
        let name = Path::new(&path).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if NOT_READ.contains(&name) {
            continue;
        }
        let Some(text) = text(&path) else { continue };
        for (i, line) in text.lines().enumerate() {
            for phrase in OUTSIDE.iter().filter(|p| line.contains(**p)) {
                found.push(format!("{path}:{}: {phrase:?} in: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to material outside the repository (point to a page in docs/ instead):\n{}",
        found.join("\n")
    );
}

/// The Markdown files whose links are checked.
fn documentation(tracked: &[String]) -> Vec<String> {
    tracked
        .iter()
        .filter(|p| {
            p.as_str() == "README.md"
                || p.as_str() == "CONTRIBUTING.md"
                || (p.starts_with("docs/") && p.ends_with(".md"))
        })
        .cloned()
        .collect()
}

/// The lines of a Markdown text outside fenced code blocks, with their numbers (from 1).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(marker)) => fence = Some(marker),
            (Some(open), Some(marker)) if open == marker => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// A line without its inline code spans (a `](` inside backticks is not a link).
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The targets of the inline links `[text](target)` on a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        // A title may follow the target after a space: `[a](path "title")`.
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        targets.push(target.trim_start_matches('<').trim_end_matches('>').to_owned());
        rest = &rest[end..];
    }
    targets
}

/// GitHub's anchor for a heading: lower case, spaces as hyphens, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a Markdown text's headings give (a repeated heading gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose(text) {
        let level = line.chars().take_while(|c| *c == '#').count();
        let Some(heading) = line.get(level..).filter(|h| (1..=6).contains(&level) && h.starts_with(' ')) else {
            continue;
        };
        let base = slug(heading.trim().trim_end_matches('#'));
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    anchors
}

/// `target` resolved against the directory of `from`, relative to the repository root;
/// `None` when it climbs out of the repository.
fn resolve(from: &str, target: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let base = Path::new(from).parent().map(Path::to_path_buf).unwrap_or_default();
    for component in base.join(target).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[test]
fn relative_links_in_the_docs_lead_to_tracked_files_and_headings() {
    let tracked = tracked();
    let files: BTreeSet<&str> = tracked.iter().map(String::as_str).collect();
    let is_dir = |path: &str| !path.is_empty() && tracked.iter().any(|f| f.starts_with(&format!("{path}/")));
    let mut broken = Vec::new();
    for doc in documentation(&tracked) {
        let Some(page) = text(&doc) else { continue };
        for (number, line) in prose(&page) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                    continue;
                }
                let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
                let resolved = if path.is_empty() { Some(doc.clone()) } else { resolve(&doc, path) };
                let Some(resolved) = resolved.map(|r| r.trim_end_matches('/').to_owned()) else {
                    broken.push(format!("{doc}:{number}: {target} leads out of the repository"));
                    continue;
                };
                if !files.contains(resolved.as_str()) && !is_dir(&resolved) {
                    broken.push(format!("{doc}:{number}: {target}: {resolved} is not a tracked file (git add it?)"));
                    continue;
                }
                if anchor.is_empty() || !resolved.ends_with(".md") {
                    continue;
                }
                if !anchors(&text(&resolved).unwrap_or_default()).contains(anchor) {
                    broken.push(format!("{doc}:{number}: {target}: {resolved} has no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links in the documentation:\n{}", broken.join("\n"));
}

#[test]
fn the_checks_themselves_read_markdown_as_github_does() {
    assert_eq!(
        slug("The normalized event (schema `lms-bridge.event.v2`)"),
        "the-normalized-event-schema-lms-bridgeeventv2"
    );
    assert_eq!(slug("Order, duplicates, resends"), "order-duplicates-resends");
    let page = "# A\n## Edge\n```\n# not a heading\n```\n## Edge\n";
    assert_eq!(anchors(page), BTreeSet::from(["a".to_owned(), "edge".to_owned(), "edge-1".to_owned()]));
    assert_eq!(link_targets("see [x](docs/a.md#b \"t\") and `[y](no)` and [z](<c.md>)"), ["docs/a.md#b", "c.md"]);
    assert_eq!(resolve("docs/a.md", "../README.md").as_deref(), Some("README.md"));
    assert_eq!(resolve("docs/a.md", "contracts.md").as_deref(), Some("docs/contracts.md"));
    assert_eq!(resolve("README.md", "../outside.md"), None);
    let lines: Vec<usize> = prose("a\n```sh\nb\n```\nc").into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, [1, 5]);
}
