//! The tree's own rules, checked on every test run (in the manner of rust-analyzer's tidy test):
//! every Rust file says what it is for in a `//!` line; every path ARCHITECTURE.md names exists;
//! no crate has modules that import each other in a loop; no source file grows past one idea.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Source files allowed past [`MAX_LINES`] lines of non-test code, each with its reason.
const LONG_FILES: &[(&str, &str)] = &[];

/// Lines one file may hold outside its `#[cfg(test)]` items.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// Every `.rs` file of the workspace's crates, relative to the root.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &mut out);
    let mut files: Vec<PathBuf> = out
        .into_iter()
        .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_owned))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rust_file_starts_with_a_doc_line() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|p| !read(p).starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "no leading `//!` line: {missing:?}");
}

/// The backticked words of `text` that name a file or folder of the tree: they hold a `/`, end
/// in a file name with an extension or in `/`, are relative, and are not URLs, globs or
/// templates (`Saved/Deleted` names two events, not a path).
fn named_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, part) in text.split('`').enumerate() {
        let candidate = part.trim_end_matches([',', '.', ':']);
        let plain = candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
        let last = candidate.rsplit('/').next().unwrap_or("");
        let file_or_folder = last.contains('.') || candidate.ends_with('/');
        if i % 2 == 1
            && plain
            && file_or_folder
            && candidate.contains('/')
            && !candidate.starts_with('/')
            && !candidate.starts_with("..")
        {
            out.insert(candidate.to_owned());
        }
    }
    out
}

#[test]
fn every_path_architecture_names_exists() {
    let text = read(Path::new("ARCHITECTURE.md"));
    let paths = named_paths(&text);
    assert!(paths.len() > 20, "too few paths found: {paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_path_finder_skips_urls_globs_and_templates() {
    let found = named_paths(
        "`api/src/lib.rs`, `/api/v1/nodes`, `schemas/avro/*.avsc`, `nerve.v1.<kind>`, \
         `Saved/Deleted` and `https://x/y` but `infra/dev/`.",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["api/src/lib.rs", "infra/dev/"]
    );
}

/// `text` without its `#[cfg(test)]` items (the test module, test helpers).
fn non_test(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let brace = item.find('{');
        let semi = item.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (i, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// `text` without its comments.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_source_file_grows_past_one_idea() {
    let allowed: HashMap<&str, &str> = LONG_FILES.iter().copied().collect();
    let mut long = Vec::new();
    for path in rust_files() {
        let name = path.display().to_string();
        if name.contains("/tests/") {
            continue;
        }
        let lines = non_test(&read(&path)).lines().count();
        if lines > MAX_LINES && !allowed.contains_key(name.as_str()) {
            long.push(format!("{name}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines of non-test code (split by what changes together, or list \
         the file with a reason in LONG_FILES): {long:?}"
    );
}

/// A crate's top-level module of a source file (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The first path segment of every `crate::…` reference in `text`, braces unfolded.
fn crate_refs(text: &str) -> BTreeSet<String> {
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `nerve_crate::`, `$crate::`
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(group[start..j].trim()).to_owned());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(group[start..j].trim()).to_owned());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest).to_owned());
        }
    }
    out.remove("");
    out
}

/// What the crate root re-exports, by name, and from which module (`pub use m::{A, B}`).
fn reexports(root_text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stmt in root_text.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit("::").next().unwrap_or("").trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut found = stack[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_module_cycle() {
    let files = rust_files();
    let crates: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| {
            let mut parts = f.components();
            let krate = parts.next()?;
            (parts.next()?.as_os_str() == "src").then(|| Path::new(krate.as_os_str()).join("src"))
        })
        .collect();
    let mut cycles = Vec::new();
    for src in crates {
        let root_text = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| std::fs::read_to_string(root().join(&src).join(f)).unwrap_or_default())
            .collect::<String>();
        let exported = reexports(&root_text);
        let modules: BTreeSet<String> = files
            .iter()
            .filter(|f| f.starts_with(&src))
            .filter_map(|f| module_of(&src, f))
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files.iter().filter(|f| f.starts_with(&src)) {
            let Some(from) = module_of(&src, file) else {
                continue;
            };
            let text = read(file);
            for name in crate_refs(&uncommented(&non_test(&text))) {
                let to = if modules.contains(&name) {
                    Some(name)
                } else {
                    exported.get(&name).cloned()
                };
                if let Some(to) = to.filter(|t| *t != from && modules.contains(t)) {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        if let Some(c) = cycle(&graph) {
            cycles.push(format!("{}: {}", src.display(), c.join(" → ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other: {cycles:?}"
    );
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let refs = crate_refs("use crate::{a::X, b}; crate::c::f(); nerve_crate::d; $crate::e");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
        }
        g
    };
    assert!(cycle(&graph(&[("a", "b"), ("b", "c")])).is_none());
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let exported = reexports("pub use context::{Context, Recorded};\npub use error::Err as E;");
    let code = "use crate::a; // crate::b\n#[cfg(test)]\nfn helper() { crate::c(); }\nfn f() {}\n\
                #[cfg(test)]\nmod tests { use crate::d; }\n";
    let refs = crate_refs(&uncommented(&non_test(code)));
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        exported.get("Recorded").map(String::as_str),
        Some("context")
    );
    assert_eq!(exported.get("E").map(String::as_str), Some("error"));
}
