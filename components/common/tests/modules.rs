//! The library's top-level modules form no cycle: a module may use the ones beneath it, never one that
//! uses it back, so each can be read (and changed) knowing only what is beneath it. Composition — which
//! handler, which writer, which configuration — lives in `app`, the one module allowed to know them all.
//!
//! The graph is read from the source: every `crate::<module>` a file's code names (in a path or a `use`,
//! grouped imports included) is an edge from the file's top-level module to `<module>`. Comments and test
//! code (`#[cfg(test)]` items and the files they declare, `tests.rs`) are left out: tests may reach
//! anywhere. `cargo test -p common --test modules -- --nocapture` prints the map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its code names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Cycles not broken yet, each an edge that closes one, with why it is still there. The test fails when
/// one of them is gone (take it off the list) and when any other cycle appears.
const KNOWN: &[(&str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether an attribute line makes the next item test-only.
fn is_test_cfg(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("#[cfg(") && line.contains("test") && !line.contains("not(test")
}

/// The directory a file's `mod child;` declarations live in.
fn child_dir(file: &Path) -> PathBuf {
    let parent = file.parent().expect("a file has a directory");
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
        None => parent.to_path_buf(),
    }
}

/// The lines of `file` that are code outside tests; the files of test-only `mod x;` go to `test_files`.
fn code_lines(file: &Path, text: &str, test_files: &mut Vec<PathBuf>) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_test_cfg(line) {
            // Skip further attributes, then the item: one line ending in `;`, else up to the brace that
            // closes it at the item's indentation.
            i += 1;
            while i < lines.len() && lines[i].trim_start().starts_with("#[") {
                i += 1;
            }
            let Some(item) = lines.get(i) else { break };
            let trimmed = item.trim();
            if let Some(name) = trimmed
                .strip_prefix("mod ")
                .or_else(|| trimmed.strip_prefix("pub mod "))
                .and_then(|rest| rest.strip_suffix(';'))
            {
                let dir = child_dir(file);
                test_files.push(dir.join(format!("{name}.rs")));
                test_files.push(dir.join(name));
            } else if !trimmed.ends_with(';') {
                let indent = &item[..item.len() - item.trim_start().len()];
                while i < lines.len()
                    && !(lines[i].starts_with(indent) && lines[i][indent.len()..].starts_with('}'))
                {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if !line.trim_start().starts_with("//") {
            kept.push(line.to_owned());
        }
        i += 1;
    }
    kept
}

/// The top-level modules `code` names through `crate::`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first identifier of each top-level entry.
            let mut depth = 0usize;
            let mut start = true;
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident(&group[n..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> Graph {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut test_files = Vec::new();
    let mut code = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a source file is readable");
        code.push((file.clone(), code_lines(file, &text, &mut test_files)));
    }
    let mut graph = Graph::new();
    for (file, lines) in code {
        let relative = file.strip_prefix(&root).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name")
            .trim_end_matches(".rs")
            .to_owned();
        let test_only = test_files.iter().any(|t| file.starts_with(t))
            || file.file_name().is_some_and(|n| n == "tests.rs")
            || top == "testing";
        if top == "lib" || test_only {
            continue;
        }
        let uses = references(&lines.join("\n"));
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(uses.into_iter().filter(|m| *m != top));
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found.sort();
    state.found
}

#[test]
fn top_level_modules_form_no_cycle() {
    let mut graph = graph();
    println!("module map (module -> modules it uses):");
    for (module, uses) in &graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("  {module} -> {}", uses.join(" "));
    }
    let found = cycles(&graph);
    for cycle in &found {
        println!("cycle: {}", cycle.join(" <-> "));
    }
    for (from, to, why) in KNOWN {
        assert!(
            graph.get(*from).is_some_and(|uses| uses.contains(*to)),
            "{from} -> {to} is gone: take it off KNOWN ({why})"
        );
        graph.get_mut(*from).expect("checked above").remove(*to);
    }
    let left = cycles(&graph);
    assert!(
        left.is_empty(),
        "module cycles (each group uses itself through the others): {left:?}"
    );
}

#[test]
fn grouped_imports_and_paths_are_references() {
    let code = "use crate::{api::{Request, Response}, platform};\nlet x = crate::queue::Queue::new();\nmy_crate::nope();";
    let found: Vec<String> = references(code).into_iter().collect();
    assert_eq!(found, ["api", "platform", "queue"]);
}

#[test]
fn test_code_is_left_out() {
    let text = "use crate::api;\n#[cfg(test)]\nmod tests {\n    use crate::queue;\n}\n#[cfg(test)]\nmod helpers;\n";
    let mut test_files = Vec::new();
    let lines = code_lines(Path::new("/src/drain/mod.rs"), text, &mut test_files);
    assert_eq!(lines, ["use crate::api;"]);
    assert!(test_files.contains(&PathBuf::from("/src/drain/helpers.rs")));
}
