//! The layer table in `src/lib.rs` is the architecture, and this test keeps
//! the code true to it: it reads the table from the crate's docs, reads
//! every source file's paths into other modules (`crate::…`, `super::…` up
//! to the crate root, `mapwatch::…` in the binary), and fails on any edge
//! the table does not allow, on a module the table does not list, and on a
//! table row that may use a module of its own or a higher layer (which is
//! what keeps the table, and so the code, free of cycles).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// One row of the layer table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    layer: u32,
    may_use: BTreeSet<String>,
}

/// The table: module → row.
type Table = BTreeMap<String, Row>;

/// Reads the layer table from the crate docs: rows `//! | N | `module` |
/// what | `a`, `b` |` (the last cell `—` for none).
fn parse_table(lib_rs: &str) -> Result<Table, String> {
    let mut table = Table::new();
    for line in lib_rs.lines() {
        let Some(row) = line.trim().strip_prefix("//!") else {
            continue;
        };
        let cells: Vec<&str> = row.trim().split('|').map(str::trim).collect();
        // "| 3 | `plan` | … | `model`, … |" splits into ["", "3", "`plan`", …, ""].
        if cells.len() < 6 || !cells[0].is_empty() {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue;
        };
        let module = cells[2].trim_matches('`').to_string();
        let uses = cells[cells.len() - 2];
        let may_use = uses
            .split(',')
            .map(|m| m.trim().trim_matches('`').to_string())
            .filter(|m| !m.is_empty() && m != "—" && m != "-")
            .collect();
        if table
            .insert(module.clone(), Row { layer, may_use })
            .is_some()
        {
            return Err(format!("table: {module} has two rows"));
        }
    }
    if table.is_empty() {
        return Err("no layer table found in the crate docs".into());
    }
    Ok(table)
}

/// Removes comments, string and character literals from Rust source,
/// keeping everything else (lifetimes included) in place.
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        // Raw strings: r"…", r#"…"#, br"…".
        let raw_start = if c == 'r' && matches!(next, Some('"' | '#')) {
            Some(i + 1)
        } else if c == 'b' && next == Some('r') && matches!(chars.get(i + 2), Some('"' | '#')) {
            Some(i + 2)
        } else {
            None
        };
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if let (Some(start), false) = (raw_start, ident_before) {
            let mut j = start;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\u{…}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segments of the paths a use tree starting at `text` names:
/// `model::X` gives `model`, `{model::X, plan::{a, b}}` gives `model` and
/// `plan`.
fn heads(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    item_start = false;
                    let head = ident(&group[i..]);
                    if !head.is_empty() && head != "self" {
                        heads.push(head.to_string());
                    }
                }
                _ => {}
            }
        }
        heads
    } else {
        let head = ident(text);
        if head.is_empty() || head == "self" {
            Vec::new()
        } else {
            vec![head.to_string()]
        }
    }
}

/// The top-level modules a source file refers to. `module` is the file's
/// module path (`["plan", "site"]` for `src/plan/site.rs`); `root` names
/// the path prefix that means the crate root (`crate`, or the library's
/// name in the binary).
fn references(source: &str, module: &[String], roots: &[&str]) -> BTreeSet<String> {
    let text = strip(source);
    let mut found = BTreeSet::new();
    // Inline modules (`mod tests { … }`) nest the module path.
    let mut path: Vec<String> = module.to_vec();
    let mut opened: Vec<Option<usize>> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let ident_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let at_word = i == 0 || !ident_char(bytes[i - 1]);
        let rest = &text[i..];
        if at_word && rest.starts_with("mod ") {
            let name = ident(rest[4..].trim_start());
            let after = rest[4..].trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                path.push(name.to_string());
                // The brace opening it is pushed below when reached.
                let brace = i + rest.find('{').unwrap_or(0);
                opened.push(Some(brace));
            }
        }
        match bytes[i] {
            b'{' => {
                if opened.last().copied().flatten() != Some(i) {
                    opened.push(None);
                } else if let Some(last) = opened.last_mut() {
                    // Mark the inline module's brace as seen.
                    *last = Some(usize::MAX);
                }
            }
            b'}' => {
                if let Some(Some(_)) = opened.pop() {
                    path.pop();
                }
            }
            _ => {}
        }
        if at_word {
            for root in roots {
                if let Some(after) = rest.strip_prefix(root).and_then(|r| r.strip_prefix("::")) {
                    found.extend(heads(after));
                }
            }
            if rest.starts_with("super::") {
                let mut after = rest;
                let mut ups = 0;
                while let Some(r) = after.strip_prefix("super::") {
                    after = r;
                    ups += 1;
                }
                if ups >= path.len() {
                    found.extend(heads(after));
                }
            }
        }
        i += 1;
    }
    found
}

/// A source file's module path and the top-level module it belongs to.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Every violation of the table by the files (path relative to `src/`,
/// contents), as one line each.
fn check(table: &Table, files: &[(PathBuf, String)], library: &str) -> Vec<String> {
    let mut violations = Vec::new();
    for (module, row) in table {
        for used in &row.may_use {
            match table.get(used) {
                None => {
                    violations.push(format!("table: {module} may use {used}, which has no row"))
                }
                Some(other) if other.layer >= row.layer => violations.push(format!(
                    "table: {module} (layer {}) may use {used} (layer {}): only lower layers",
                    row.layer, other.layer
                )),
                Some(_) => {}
            }
        }
    }
    for (relative, source) in files {
        let path = module_path(relative);
        let Some(top) = path.first() else {
            continue; // lib.rs: declares the modules
        };
        let Some(row) = table.get(top) else {
            violations.push(format!(
                "{}: module {top} is not in the layer table",
                relative.display()
            ));
            continue;
        };
        let roots: &[&str] = if top == "main" {
            &["crate", library]
        } else {
            &["crate"]
        };
        for used in references(source, &path, roots) {
            if used != *top && !row.may_use.contains(&used) {
                violations.push(format!(
                    "{}: {top} uses {used}, which the layer table does not allow",
                    relative.display()
                ));
            }
        }
    }
    violations
}

/// Every `.rs` file under `dir`, relative to it, with its contents.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("source file");
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), text));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_code_follows_the_layer_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let table = parse_table(&lib).expect("the layer table");
    let files = sources(&src);
    assert!(files.len() > 30, "{} files", files.len());
    // Every module the library declares has a row.
    for line in lib.lines() {
        if let Some(module) = line.strip_prefix("pub mod ") {
            let module = module.trim_end_matches(';');
            assert!(
                table.contains_key(module),
                "{module} has no row in the table"
            );
        }
    }
    let violations = check(&table, &files, "mapwatch");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// A table of three layers for the checker's own tests.
fn small_table() -> Table {
    parse_table(
        "//! | layer | module | what | may use |
//! |---|---|---|---|
//! | 0 | `model` | vocabulary | — |
//! | 1 | `plan` | planning | `model` |
//! | 2 | `view` | views | `model` |
//! | 3 | `session` | wiring | `model`, `plan`, `view` |",
    )
    .unwrap()
}

fn file(path: &str, text: &str) -> (PathBuf, String) {
    (PathBuf::from(path), text.to_string())
}

#[test]
fn the_checker_reads_the_table() {
    let table = small_table();
    assert_eq!(table.len(), 4);
    assert_eq!(table["model"].layer, 0);
    assert!(table["model"].may_use.is_empty());
    assert_eq!(
        table["session"].may_use,
        ["model", "plan", "view"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn the_checker_fails_on_a_forbidden_edge() {
    let table = small_table();
    let ok = [
        file("plan/mod.rs", "use crate::model::Frame;\nmod site;"),
        file(
            "plan/site.rs",
            "use super::x;\nuse crate::{model::{A, B}, plan::C};",
        ),
        file("session.rs", "use crate::{model, plan::plan, view::text};"),
    ];
    assert_eq!(check(&table, &ok, "lib"), Vec::<String>::new());
    // A view reaching into the planner, three ways.
    for text in [
        "use crate::plan::PlanRequest;",
        "use crate::{model::Snapshot, plan::{self, x}};",
        "fn f() { let _ = crate::plan::DEFAULT; }",
    ] {
        let violations = check(&table, &[file("view/text.rs", text)], "lib");
        assert_eq!(
            violations,
            ["view/text.rs: view uses plan, which the layer table does not allow"],
            "{text}"
        );
    }
    // `super::` out of a top-level module is a path to a sibling.
    let violations = check(&table, &[file("view/mod.rs", "use super::plan::X;")], "lib");
    assert_eq!(violations.len(), 1, "{violations:?}");
    // …but inside an inline module it is the module itself.
    let nested = "mod tests {\n use super::*;\n use super::text::render;\n}";
    assert!(check(&table, &[file("view/mod.rs", nested)], "lib").is_empty());
    // Paths in comments and strings are not edges.
    let quoted = "// crate::plan::x\nconst S: &str = \"crate::plan::x\";\n/* super::plan */";
    assert!(check(&table, &[file("view/mod.rs", quoted)], "lib").is_empty());
    // An unlisted module is a violation too.
    assert_eq!(
        check(&table, &[file("extra.rs", "")], "lib"),
        ["extra.rs: module extra is not in the layer table"]
    );
}

#[test]
fn the_checker_fails_on_a_cycle_in_the_table() {
    let mut table = small_table();
    // plan may use session, which may use plan: a cycle, and an upward edge.
    table
        .get_mut("plan")
        .unwrap()
        .may_use
        .insert("session".into());
    let violations = check(&table, &[], "lib");
    assert_eq!(
        violations,
        ["table: plan (layer 1) may use session (layer 3): only lower layers"]
    );
    table
        .get_mut("view")
        .unwrap()
        .may_use
        .insert("view2".into());
    assert!(check(&table, &[], "lib")
        .iter()
        .any(|v| v.contains("view2, which has no row")));
}

#[test]
fn the_binary_reaches_the_library_by_its_name() {
    let table = parse_table(
        "//! | 0 | `model` | v | — |\n//! | 1 | `plan` | p | `model` |\n//! | 2 | `main` | cli | `plan` |",
    )
    .unwrap();
    let main = file(
        "main.rs",
        "use mapwatch::{plan::PlanRequest, model::Snapshot};",
    );
    assert_eq!(
        check(&table, &[main], "mapwatch"),
        ["main.rs: main uses model, which the layer table does not allow"]
    );
}
