//! The documentation's links hold: every relative link in `README.md`, `docs/*.md`,
//! `fleet/README.md` and `models/*.md` names a file or folder that exists, and every `#anchor`
//! into a markdown file names one of its headings (GitHub's anchors: the heading's text in
//! lower case, spaces as `-`, punctuation dropped, `-1`, `-2`… on repeats). Also: the README
//! stays a front door of at most 200 lines; the rest belongs in `docs/`.
//!
//! Links are read outside code: fenced blocks, indented blocks and `inline code` are skipped.
//! Links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 200;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markdown files whose links are checked, relative to the repository.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md"), PathBuf::from("fleet/README.md")];
    for dir in ["docs", "models"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}/: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "md"))
            .map(|path| Path::new(dir).join(path.file_name().unwrap()))
            .collect();
        found.sort();
        docs.extend(found);
    }
    docs
}

/// The text with everything that is code replaced by spaces (newlines kept, so line numbers
/// still hold): fenced blocks, indented blocks and inline code spans.
fn prose(text: &str) -> String {
    blank_code_spans(&without_code_blocks(text))
}

/// The text with fenced code blocks and indented code blocks (four spaces or a tab, after a
/// blank line) replaced by spaces, newlines kept.
fn without_code_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<String> = None;
    let mut previous_blank = true;
    let mut in_indented = false;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim_start();
        let indent = content.len() - trimmed.len();
        let blank = trimmed.is_empty();
        let code = if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) && indent < 4 {
                fence = None;
            }
            true
        } else if indent < 4 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            let ch = trimmed.chars().next().unwrap();
            let run = trimmed.chars().take_while(|&c| c == ch).count();
            fence = Some(ch.to_string().repeat(run));
            true
        } else if !blank
            && (content.starts_with("    ") || content.starts_with('\t'))
            && (previous_blank || in_indented)
        {
            in_indented = true;
            true
        } else {
            if !blank {
                in_indented = false;
            }
            false
        };
        previous_blank = blank;
        if code {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Replaces each `code span` (delimited by equal runs of backticks) with spaces.
fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let open = run_at(i);
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for c in &mut out[i..j + open] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = j + open;
            }
            None => i += open,
        }
    }
    out.into_iter().collect()
}

/// Link targets in prose, with the line each is on: inline links and images
/// (`[text](target "title")`, `![alt](<target>)`) and reference definitions (`[label]: target`).
fn links(prose: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') && !trimmed.starts_with("[^") {
            if let Some(end) = trimmed
                .find(']')
                .filter(|&e| trimmed[e + 1..].starts_with(':'))
            {
                let target = trimmed[end + 2..].split_whitespace().next().unwrap_or("");
                if !target.is_empty() {
                    found.push((number + 1, unwrap_angle(target).to_string()));
                }
                continue;
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            // The target runs to the `)` that balances the opening one.
            let mut depth = 0usize;
            let mut end = after.len();
            for (k, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = k;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let inside = after[..end].trim();
            let target = if let Some(angled) = inside.strip_prefix('<') {
                angled.split('>').next().unwrap_or("")
            } else {
                inside.split_whitespace().next().unwrap_or("")
            };
            if !target.is_empty() {
                found.push((number + 1, target.to_string()));
            }
            rest = &after[end.min(after.len())..];
        }
    }
    found
}

fn unwrap_angle(target: &str) -> &str {
    target
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(target)
}

/// `%20` and the like, as a browser would read them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A link with a scheme (`https://…`, `mailto:…`) or protocol-relative (`//host/…`).
fn is_external(target: &str) -> bool {
    if target.starts_with("//") {
        return true;
    }
    match target.find(':') {
        Some(colon) => {
            let scheme = &target[..colon];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !scheme.contains('/')
        }
        None => false,
    }
}

/// GitHub's anchor for a heading's text: inline markup rendered to text, lower case, each
/// space a `-`, every character that is not a letter, digit, `-` or `_` dropped.
fn slug(heading: &str) -> String {
    // `[text](url)` and `![alt](url)` read as their text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|k| open + k) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|k| close + k) else {
            break;
        };
        text.push_str(rest[..open].trim_end_matches('!'));
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
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

/// The anchors of a markdown file's headings (ATX `## …` and setext `===`/`---`), outside code,
/// with GitHub's `-1`, `-2`… for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let blocks = without_code_blocks(text);
    let prose_lines: Vec<&str> = blocks.lines().collect();
    let mut seen = BTreeSet::new();
    let mut previous: Option<&str> = None;
    let add = |heading: &str, seen: &mut BTreeSet<String>| {
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 1;
        while seen.contains(&anchor) {
            anchor = format!("{base}-{n}");
            n += 1;
        }
        seen.insert(anchor);
    };
    for &line in &prose_lines {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if indent < 4
            && (1..=6).contains(&hashes)
            && (trimmed.len() == hashes || trimmed[hashes..].starts_with([' ', '\t']))
        {
            let body = trimmed[hashes..].trim();
            // A closing run of `#`s is not part of the heading.
            let body = match body.trim_end_matches('#') {
                b if b.is_empty() || b.ends_with([' ', '\t']) => b.trim_end(),
                _ => body,
            };
            add(body, &mut seen);
            previous = None;
            continue;
        }
        let underline = !trimmed.is_empty()
            && indent < 4
            && (trimmed.trim_end().chars().all(|c| c == '=')
                || trimmed.trim_end().chars().all(|c| c == '-'));
        match previous {
            Some(text) if underline => {
                add(text.trim(), &mut seen);
                previous = None;
            }
            _ => {
                previous = (!trimmed.is_empty() && !trimmed.starts_with('|')).then_some(line);
            }
        }
    }
    seen
}

/// The broken links of one document, as `FILE:LINE: TARGET: what is wrong`.
fn broken_links(doc: &Path, text: &str) -> Vec<String> {
    let root = repo();
    let dir = doc.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for (line, target) in links(&prose(text)) {
        if is_external(&target) {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let path = percent_decode(path);
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else if let Some(from_root) = path.strip_prefix('/') {
            PathBuf::from(from_root)
        } else {
            dir.join(&path)
        };
        let location = format!("{}:{line}: {target}", doc.display());
        let full = root.join(&file);
        if !full.exists() {
            problems.push(format!(
                "{location}: no such file or folder {}",
                file.display()
            ));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if !full.is_file() || full.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let fragment = percent_decode(fragment);
        let known = anchors(&std::fs::read_to_string(&full).unwrap());
        if !known.contains(&fragment) {
            problems.push(format!(
                "{location}: no heading with the anchor #{fragment} in {}",
                file.display()
            ));
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(repo().join(&doc))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        checked += links(&prose(&text)).len();
        problems.extend(broken_links(&doc, &text));
    }
    assert!(
        checked > 0,
        "no links found at all: is the link reader broken?"
    );
    assert!(
        problems.is_empty(),
        "{} broken link(s) in the documentation (file:line: target: problem):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_readme_is_a_front_door_of_at_most_200_lines() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: keep it to what agecam is, \
         how to try and test it, the crates and where to read on, and move details into docs/"
    );
}

#[test]
fn anchors_are_github_slugs() {
    assert_eq!(slug("Fleet (collector, `fleet/`)"), "fleet-collector-fleet");
    assert_eq!(
        slug("Instruction counts without a Pi (`benches/aarch64-cost.sh`)"),
        "instruction-counts-without-a-pi-benchesaarch64-costsh"
    );
    assert_eq!(
        slug("Host crate `agecam-host` (`host/src/`)"),
        "host-crate-agecam-host-hostsrc"
    );
    assert_eq!(slug("See [the card](x.md) now"), "see-the-card-now");
    assert_eq!(slug("At 1280×720"), "at-1280720");
    let text = "# Title\n\n## Same\n\n## Same\n\n```\n# not a heading\n```\n\nSetext\n------\n";
    let found = anchors(text);
    let want: BTreeSet<String> = ["title", "same", "same-1", "setext"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}

#[test]
fn links_in_code_are_not_links_and_broken_ones_are_reported() {
    let text = "See [a](docs/nowhere.md) and [b](README.md#no-such-heading) and\n\
                [c](https://example.org) and `[d](not/a/link.md)`.\n\n\
                ```\n[e](inside/a/fence.md)\n```\n\n    [f](indented/code.md)\n\n\
                [g](tests/docs_links.rs)\n";
    let found: Vec<String> = links(&prose(text)).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        found,
        [
            "docs/nowhere.md",
            "README.md#no-such-heading",
            "https://example.org",
            "tests/docs_links.rs"
        ]
    );
    let problems = broken_links(Path::new("example.md"), text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("example.md:1: docs/nowhere.md: no such file"));
    assert!(problems[1].contains("no heading with the anchor #no-such-heading in README.md"));
}
