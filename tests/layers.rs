//! The import graph of each crate's top-level modules, checked against the layers the code map
//! in docs/architecture.md draws: a module may use only modules of lower layers, so there is no cycle and no
//! import from a lower layer to a higher one. A new module must be given a layer here (and in
//! docs/architecture.md's picture).
//!
//! The graph is read from the source text (`crate::module`, `super::module` at the top level,
//! `use crate::{a, b}` groups, and `agecam::module` in a crate's binary), outside comments and
//! `mod tests` blocks; tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom up.
const DEVICE: &[&[&str]] = &[
    &["buckets", "logging", "fault_log", "systemd", "capture"],
    &["config"],
    &["error"],
    &["vision"],
    &["model"],
    &["face"],
    &["track"],
    &["schedule"],
    &["display", "stats"],
    &["push", "pipeline"],
    &["daemon"],
    &["cli"],
    &["bin"],
];

const HOST: &[&[&str]] = &[
    &["ops", "dataset", "plot", "onnx_kit"],
    &["mobilenet_v2", "crops", "quantize"],
    &["net", "teacher", "tflite"],
    &["init_model"],
    &["trainer", "bench"],
    &["eval", "det_bench", "fit_framing", "pose_eval"],
    &["cmd"],
    &["main"],
];

const FLEET: &[&[&str]] = &[
    &["clock", "schema", "chart"],
    &["store"],
    &["config", "report"],
    &["ingest"],
    &["page"],
    &["web"],
    &["collector"],
    &["main"],
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comments and without a trailing `#[cfg(test)] mod tests` block.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Module names a piece of code reaches through `prefix::` paths.
fn reached(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pattern = format!("{prefix}::");
    let mut rest = code;
    while let Some(i) = rest.find(&pattern) {
        // Only a whole path segment: `agecam_host::` must not match `agecam::`.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + pattern.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(item.trim().split("::").next().unwrap().trim().to_string());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out.into_iter()
        .map(|name| match name.as_str() {
            // The crate-root re-exports of the error module.
            "Error" | "Result" => "error".to_string(),
            _ => name,
        })
        .collect()
}

/// Top-level module → the top-level modules it imports.
fn graph(src: &Path, crate_name: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(src, f))
        .filter(|m| m != "lib")
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(src, file);
        if from == "lib" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let mut names = reached(&code, "crate");
        if file.parent() == Some(src) {
            names.extend(reached(&code, "super"));
        }
        if from == "bin" || from == "main" {
            names.extend(reached(&code, crate_name));
        }
        let entry = edges.entry(from.clone()).or_default();
        for name in names {
            if name != from && modules.contains(&name) {
                entry.insert(name);
            }
        }
    }
    edges
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn check(src: &str, crate_name: &str, layers: &[&[&str]]) {
    let src = repo().join(src);
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(n, mods)| mods.iter().map(move |m| (*m, n)))
        .collect();
    let edges = graph(&src, crate_name);
    let mut problems = Vec::new();
    for (from, tos) in &edges {
        let Some(&lf) = layer_of.get(from.as_str()) else {
            problems.push(format!("{from} is in no layer of this test"));
            continue;
        };
        for to in tos {
            match layer_of.get(to.as_str()) {
                None => problems.push(format!("{to} (used by {from}) is in no layer")),
                Some(&lt) if lt >= lf => problems.push(format!(
                    "{from} (layer {lf}) imports {to} (layer {lt}): only lower layers may be used"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}\nthe graph: {edges:#?}",
        src.display(),
        problems.join("\n")
    );
}

#[test]
fn device_crate_imports_only_downwards() {
    check("src", "agecam", DEVICE);
}

#[test]
fn host_crate_imports_only_downwards() {
    check("host/src", "agecam_host", HOST);
}

#[test]
fn fleet_crate_imports_only_downwards() {
    check("fleet/src", "agecam_fleet", FLEET);
}

#[test]
fn the_reader_sees_groups_paths_and_re_exports() {
    let code = code_of(
        "use crate::{a::B, c};\nuse crate::Error; // crate::commented\nfn f() { crate::d::g(); my_crate::e::h(); }",
    );
    assert_eq!(reached(&code, "crate"), ["a", "c", "error", "d"]);
}
