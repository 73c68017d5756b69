//! The switch's folders are layers, and dependencies point one way (issue
//! #13, ARCHITECTURE.md). This reads the crate's own source: every
//! `crate::…` and `super::…` path names a module, each file is a node, and
//! the test fails on a circle between files or on an import a layer may not
//! make. Paths written in full (`crate::a::b::f()`) count as imports too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the vocabularies at the top may not reach: any layer.
const EVERY_LAYER: &[&str] = &[
    "edge",
    "flows",
    "settlement",
    "adapters",
    "store",
    "sim",
    "server",
    "provision",
    "sim_process",
];

/// Which folders each layer may not reach (directly or through another
/// file). `sim` is wired in by `server`, `provision` and `sim_process` only.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "flows",
        &["edge", "sim", "server", "provision", "sim_process"],
    ),
    (
        "settlement",
        &["edge", "sim", "server", "provision", "sim_process"],
    ),
    (
        "adapters",
        &[
            "edge",
            "flows",
            "settlement",
            "store",
            "sim",
            "server",
            "provision",
            "sim_process",
        ],
    ),
    (
        "store",
        &[
            "edge",
            "flows",
            "settlement",
            "sim",
            "server",
            "provision",
            "sim_process",
        ],
    ),
    ("edge", &["sim", "server", "provision", "sim_process"]),
    (
        "sim",
        &[
            "edge",
            "flows",
            "settlement",
            "store",
            "server",
            "provision",
            "sim_process",
        ],
    ),
    // The vocabularies at the top import no layer.
    ("accounts", EVERY_LAYER),
    ("caller", EVERY_LAYER),
    ("civil", EVERY_LAYER),
    ("clock", EVERY_LAYER),
    ("config", EVERY_LAYER),
    ("demo", EVERY_LAYER),
    ("error", EVERY_LAYER),
    ("fees", EVERY_LAYER),
    ("ids", EVERY_LAYER),
    ("secrets", EVERY_LAYER),
    ("topup", EVERY_LAYER),
];

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Module = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.is_empty() && rel != Path::new("lib.rs") {
                continue; // main.rs: the binary, not the library
            }
            out.insert(parts, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The modules a file's text names through `crate::` and `super::` paths
/// (comments and test modules excluded: `#[cfg(test)]` onwards).
fn references(module: &Module, text: &str, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    for (start, _) in text
        .match_indices("crate::")
        .chain(text.match_indices("super::"))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        // Resolve `super::super::…` and `crate::…` to an absolute path.
        let mut rest = &text[start..];
        let mut path: Module = if rest.starts_with("crate::") {
            rest = &rest["crate::".len()..];
            Vec::new()
        } else {
            let mut base = module.clone();
            // A file's own module is its parent for `super` unless it is a mod.rs
            // (known modules with children are folders).
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            base
        };
        for segment in rest.split("::") {
            let name: String = segment
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                break;
            }
            path.push(name);
            if !known.contains(&path) {
                path.pop();
                break;
            }
            if segment.len() != path.last().unwrap().len() {
                break;
            }
        }
        if !path.is_empty() && &path != module {
            found.insert(path);
        }
    }
    found
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &files {
        let mut edges = references(module, text, &known);
        // A folder's mod.rs reaches its children through `pub mod` and
        // `pub use child::…`; only the re-exports are dependencies.
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("pub use ") {
                let first: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let mut child = module.clone();
                child.push(first);
                if known.contains(&child) {
                    edges.insert(child);
                }
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_file_imports_in_a_circle() {
    let graph = graph();
    assert!(
        graph.len() > 30,
        "the source tree was read ({} files)",
        graph.len()
    );
    // Depth-first search for a back edge; report the circle.
    fn visit(
        m: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        path: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == m).unwrap();
                return Some(path[at..].to_vec());
            }
            _ => {}
        }
        state.insert(m.clone(), 1);
        path.push(m.clone());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, state, path) {
                return Some(circle);
            }
        }
        path.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut state, &mut Vec::new()) {
            let names: Vec<String> = circle.iter().map(name).collect();
            panic!(
                "files import each other in a circle: {}",
                names.join(" -> ")
            );
        }
    }
}

#[test]
fn each_layer_imports_only_what_it_may() {
    let graph = graph();
    let mut broken = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        // Everything the layer's files reach, directly or not.
        let mut reached = BTreeSet::new();
        let mut todo: Vec<&Module> = graph
            .keys()
            .filter(|m| m.first().is_some_and(|f| f == layer))
            .collect();
        assert!(!todo.is_empty(), "layer {layer} exists");
        while let Some(m) = todo.pop() {
            for next in &graph[m] {
                if reached.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }
        for m in &reached {
            if m.first().is_some_and(|f| forbidden.contains(&f.as_str())) {
                broken.push(format!("{layer} reaches {}", name(m)));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layering: {broken:#?}"
    );
}

#[test]
fn the_reader_sees_imports_written_every_way() {
    // The parser itself, on a made-up file: a test that finds nothing
    // because the parser is blind would pass for the wrong reason.
    let known: BTreeSet<Module> = [
        vec!["flows".to_string()],
        vec!["flows".to_string(), "engine".to_string()],
        vec!["store".to_string()],
        vec!["sim".to_string()],
    ]
    .into_iter()
    .collect();
    let text = "use crate::store::{self, X};\n/// [`crate::edge`]\nfn f() { crate::sim::Fault::None; }\nuse super::engine::*;\n#[cfg(test)]\nuse crate::edge;";
    let found = references(&vec!["flows".into(), "counter".into()], text, &known);
    let names: Vec<String> = found.iter().map(name).collect();
    assert_eq!(names, ["flows::engine", "sim", "store"]);
}

/// Time enters the switch through `clock.rs` alone, so that a step of the
/// wall clock moves nothing the switch decides (the drill in
/// `tests/tests/clock.rs` relies on it).
#[test]
fn only_the_clock_reads_the_wall_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut readers = Vec::new();
    for (module, text) in modules(&src) {
        if name(&module) != "clock" && text.contains("SystemTime") {
            readers.push(name(&module));
        }
    }
    assert!(readers.is_empty(), "these read the wall clock: {readers:?}");
}

/// The edge (the gRPC services and the console) calls the switch's API,
/// never its store or ledger (issue #26, item 4): what an operator sees is
/// what the API answers, under the same permission checks, and a store
/// failure reaches every caller sorted the same way (out of reach, or an
/// operator's problem). A call split over lines counts: whitespace is
/// ignored.
#[test]
fn the_edge_reads_no_store_or_ledger_of_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut readers = Vec::new();
    for (module, text) in modules(&src) {
        let edge = name(&module).starts_with("edge");
        let code: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if edge && (code.contains(".store.") || code.contains(".ledger.")) {
            readers.push(name(&module));
        }
    }
    assert!(
        readers.is_empty(),
        "these edge files reach past the API: {readers:?}"
    );
}
