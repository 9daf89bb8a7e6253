//! ARCHITECTURE.md's layer table, checked against the code: every library module imports only
//! the modules its row lists (and the leaves), and every row lists only rows below it, so the
//! library has no import cycle. A module's tests may import anything (they make inputs with
//! writers), so a file's text is read up to its first `#[cfg(test)]`, and `tests.rs` files are
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules any module may use, which import no other module but each other.
const LEAVES: &[&str] = &["addr", "units", "progress", "error", "input"];

/// The table's rows, top to bottom: (module, what it may use; `None` for "everything below").
fn table() -> Vec<(String, Option<BTreeSet<String>>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("## Library modules")
        .expect("ARCHITECTURE.md has a 'Library modules' section");
    let mut rows = Vec::new();
    for line in text[start..].lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `module` | holds | uses |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let module = cells[1].trim_matches('`').to_string();
        let uses = cells[3];
        let allowed = if uses.contains("everything below") {
            None
        } else {
            Some(
                uses.split(',')
                    .map(|u| u.trim().trim_matches('`').to_string())
                    .filter(|u| !u.is_empty() && u != "nothing")
                    .collect(),
            )
        };
        rows.push((module, allowed));
    }
    assert!(
        rows.len() > 8,
        "read {} rows from {}",
        rows.len(),
        path.display()
    );
    rows
}

/// Every `.rs` file of module `m` (`src/m.rs` and everything under `src/m/`), tests left out.
fn files(src: &Path, m: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let single = src.join(format!("{m}.rs"));
    if single.exists() {
        out.push(single);
    }
    let mut dirs = vec![src.join(m)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    out
}

/// The crate modules `text` names as `crate::NAME` outside comments, read up to its first
/// `#[cfg(test)]`; a name the crate root re-exports (`crate::Error`) counts as its module.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `guestcore::crate::`, `$crate::`: not this crate's path
        }
        let name: String = text[i + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    // `use crate::{a, b::c}`: the first name of each item inside the braces.
    for (i, _) in text.match_indices("crate::{") {
        let mut depth = 1;
        let mut items = vec![String::new()];
        for c in text[i + 8..].chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => items.push(String::new()),
                _ if depth == 1 => items.last_mut().unwrap().push(c),
                _ => {}
            }
        }
        for item in items {
            let name: String = item
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The modules behind the names the crate root re-exports (`pub use error::{Error, Result}`).
fn root_reexports(src: &Path) -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        for name in rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|n| n.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            out.insert(name.to_string(), module.clone());
        }
    }
    out
}

#[test]
fn every_module_imports_only_what_its_row_in_architecture_md_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let reexports = root_reexports(&src);
    let imports = |text: &str| -> BTreeSet<String> {
        imports(text)
            .into_iter()
            .map(|n| reexports.get(&n).cloned().unwrap_or(n))
            .collect()
    };
    let rows = table();
    let order: BTreeMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (m, _))| (m.as_str(), i))
        .collect();
    let mut problems = Vec::new();
    // Every top-level module of the crate has a row or is a leaf.
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if name == "lib" || LEAVES.contains(&name.as_str()) {
            continue;
        }
        if !order.contains_key(name.as_str()) {
            problems.push(format!("module `{name}` has no row in ARCHITECTURE.md"));
        }
    }
    for (i, (m, allowed)) in rows.iter().enumerate() {
        // A row lists only rows below it (no cycle).
        for u in allowed.iter().flatten() {
            match order.get(u.as_str()) {
                Some(&j) if j > i => {}
                Some(_) => problems.push(format!("`{m}` lists `{u}`, which is not below it")),
                None if LEAVES.contains(&u.as_str()) => {}
                None => problems.push(format!("`{m}` lists `{u}`, which has no row")),
            }
        }
        let files = files(&src, m);
        if files.is_empty() {
            problems.push(format!("`{m}` has a row but no source"));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in imports(&text) {
                if used == *m || LEAVES.contains(&used.as_str()) {
                    continue;
                }
                let ok = match (allowed, order.get(used.as_str())) {
                    (None, Some(&j)) => j > i,
                    (Some(a), _) => a.contains(&used),
                    (None, None) => false,
                };
                if !ok {
                    problems.push(format!(
                        "{} (module `{m}`) imports crate::{used}",
                        f.strip_prefix(&src).unwrap_or(&f).display()
                    ));
                }
            }
        }
    }
    // The leaves import only leaves.
    for leaf in LEAVES {
        for f in files(&src, leaf) {
            for used in imports(&std::fs::read_to_string(&f).unwrap()) {
                if !LEAVES.contains(&used.as_str()) {
                    problems.push(format!("leaf `{leaf}` imports crate::{used}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer rule broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_import_reader_sees_paths_and_braces() {
    let got = imports(
        "use crate::a::B;\nuse crate::{c, d::E, f::{G, H}};\nfn x() { crate::g::y() }\n\
         #[cfg(test)]\nmod tests { use crate::z; }",
    );
    let want: BTreeSet<String> = ["a", "c", "d", "f", "g"].map(String::from).into();
    assert_eq!(got, want);
}
