//! Keeps `docs/PROTOCOL.md` in step with the code: every frame type the
//! server parses or sends, every error code and every close code is
//! documented there; and every relative link of the project's documents
//! leads to a file (and heading) of the repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tern_proto::frames::FrameType;
use tern_proto::wire::tag;
use tern_proto::{close, ErrorCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let p = root().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn protocol() -> String {
    read("docs/PROTOCOL.md")
}

#[test]
fn every_frame_type_has_an_example_and_an_index_row() {
    let doc = protocol();
    let client = FrameType::ALL.map(FrameType::as_str);
    let mut missing = Vec::new();
    for ty in client.iter().chain(tag::ALL.iter()) {
        if !doc.contains(&format!("{{\"type\":\"{ty}\"")) {
            missing.push(format!("{ty}: no example frame {{\"type\":\"{ty}\",...}}"));
        }
        if !doc.contains(&format!("| `{ty}` |")) {
            missing.push(format!("{ty}: no row in the frame index (2.11)"));
        }
    }
    assert!(missing.is_empty(), "docs/PROTOCOL.md: {missing:#?}");
}

#[test]
fn every_frame_type_parses_back() {
    for ty in FrameType::ALL {
        assert_eq!(FrameType::parse(ty.as_str()), Some(ty));
    }
}

#[test]
fn every_error_code_has_a_row_with_its_status() {
    let doc = protocol();
    let missing: Vec<_> = ErrorCode::ALL
        .iter()
        .map(|c| format!("| `{}` | {} |", c.as_str(), c.http_status()))
        .filter(|row| !doc.contains(row.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md section 6 lacks rows starting {missing:#?}"
    );
}

/// The `pub const NAME: u16 = N;` of the `close` module, read from the
/// source so that a constant added without updating `close::ALL` is found.
fn close_consts() -> BTreeSet<u16> {
    let src = read("crates/tern-proto/src/codes.rs");
    let module = &src[src.find("pub mod close").expect("close module")..];
    module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": u16 = "))
        .map(|(_, v)| v.trim_end_matches(';').parse().expect("a close code"))
        .collect()
}

/// Close codes written as literals where the gateway closes a connection
/// (`kick(1000)`, `break 'run 1000`), in any file of the `ws` module.
fn close_literals() -> BTreeSet<u16> {
    let dir = "crates/tern-server/src/ws";
    let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{dir} has no source files");
    let src: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    let mut found = BTreeSet::new();
    for pat in ["kick(", "break 'run ", "close_msg("] {
        for (i, _) in src.match_indices(pat) {
            let digits: String = src[i + pat.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                found.insert(n);
            }
        }
    }
    found
}

#[test]
fn every_close_code_has_a_row() {
    let all: BTreeSet<u16> = close::ALL.into_iter().collect();
    assert_eq!(all, close_consts(), "close::ALL must list every constant");
    let stray: Vec<_> = close_literals().difference(&all).copied().collect();
    assert!(
        stray.is_empty(),
        "the ws module closes with codes outside close::ALL: {stray:?}"
    );
    let doc = protocol();
    let missing: Vec<_> = all
        .iter()
        .filter(|c| !doc.contains(&format!("\n| {c} |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md section 7 lacks {missing:?}"
    );
}

#[test]
fn protocol_speaks_of_the_project_only() {
    let doc = protocol();
    for word in ["../shared", "shared/PROTOCOL"] {
        assert!(!doc.contains(word), "docs/PROTOCOL.md mentions {word}");
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped except
/// `-` and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of `[text](target)` links outside code blocks and spans.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans: a `](` inside backticks is no link.
        let plain: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    let mut docs = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    let mut bad = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let Ok(target) = target.canonicalize() else {
                bad.push(format!("{name}: {link}: no such file"));
                continue;
            };
            if !target.starts_with(&root) {
                bad.push(format!("{name}: {link}: outside the repository"));
                continue;
            }
            if let Some(a) = anchor {
                let is_md = target.extension().is_some_and(|x| x == "md");
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if is_md && !anchors(&text).contains(a) {
                    bad.push(format!("{name}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links: {bad:#?}");
}
