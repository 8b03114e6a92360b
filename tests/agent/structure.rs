//! The crate reads from the top down: every file sits above what it imports, so the
//! module graph has no cycle and a reader can go down from `lib.rs` one hop at a time.
//! (Test modules at the end of a file are left out: they may use anything.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of the library crate and its source, test module cut off.
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || (prefix.is_empty() && name == "main") {
                continue;
            }
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let code = match source.find("#[cfg(test)]\nmod tests") {
                Some(at) => source[..at].to_string(),
                None => source,
            };
            out.insert(module, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The code without comments (line comments and doc comments).
fn without_comments(code: &str) -> String {
    code.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands `a::{b, c::{d}}` into `a::b`, `a::c::d`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(&format!("{prefix}{}", p.trim())))
        .collect()
}

/// The paths a module names: `use` trees and inline `crate::`/`super::` paths.
fn paths(code: &str) -> Vec<String> {
    let code = without_comments(code);
    let mut found = Vec::new();
    // `use` statements start a line (after any visibility).
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(tree) = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|start| trimmed.strip_prefix(start))
        else {
            continue;
        };
        let mut statement = tree.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(more) => statement.push_str(more),
                None => break,
            }
        }
        found.extend(expand(statement.split(';').next().unwrap()));
    }
    for start in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !is_ident(c) && c != ':')
                .unwrap_or(tail.len());
            if !before.is_some_and(is_ident) {
                found.push(tail[..end].trim_end_matches(':').to_string());
            }
            rest = &rest[at + start.len()..];
        }
    }
    found
}

/// The module (file) a path from `module` refers to, if it is one of ours.
fn target(module: &Module, path: &str, all: &BTreeMap<Module, String>) -> Option<Module> {
    let segments: Vec<&str> = path.split("::").map(str::trim).collect();
    let mut absolute: Module = match segments[0] {
        "crate" => Vec::new(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        "self" => module.clone(),
        first => {
            // A child module named without a prefix (`use settings::Config` in mod.rs).
            let mut child = module.clone();
            child.push(first.to_string());
            if !all.contains_key(&child) {
                return None;
            }
            module.clone()
        }
    };
    let skip = usize::from(matches!(segments[0], "crate" | "super" | "self"));
    for segment in &segments[skip..] {
        let mut deeper = absolute.clone();
        deeper.push(segment.to_string());
        if !all.contains_key(&deeper) {
            break;
        }
        absolute = deeper;
    }
    (absolute != *module && all.contains_key(&absolute)).then_some(absolute)
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("::")
    }
}

#[test]
fn modules_import_one_way_with_no_cycle() {
    let all = modules();
    let graph: BTreeMap<Module, BTreeSet<Module>> = all
        .iter()
        .map(|(module, code)| {
            let targets = paths(code)
                .iter()
                .filter_map(|p| target(module, p, &all))
                .collect();
            (module.clone(), targets)
        })
        .collect();
    assert!(
        graph[&vec!["pipeline".to_string()]].contains(&vec!["dedup".to_string()]),
        "the scanner sees imports: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        module: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|m| m == module) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(module.clone());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        stack.push(module.clone());
        for next in &graph[module] {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(module.clone());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            let cycle: Vec<String> = cycle.iter().map(name).collect();
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_scanner_expands_use_trees() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}, g}"),
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a::g"
        ]
    );
}
