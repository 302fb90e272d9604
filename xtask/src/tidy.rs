//! `cargo xtask tidy`: the architecture invariants of `docs/ARCHITECTURE.md`, checked.
//!
//! Each rule there marked **Architecture invariant** has a check here, run by `cargo test`
//! (the `tidy` test below) so a change that breaks one fails the suite, and each check has a
//! test of its own showing that it catches a deliberately broken tree. The checks read files
//! as text: they are cheap, and what they look for is spelled out in each function.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// One broken rule, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub path: PathBuf,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.rule, self.path.display(), self.what)
    }
}

/// Runs every check over the workspace at `root`.
pub fn check(root: &Path) -> Result<Vec<Violation>> {
    let mut out = Vec::new();
    out.extend(crate_layers(root)?);
    let files = rust_files(root)?;
    for file in &files {
        let rel = file.strip_prefix(root).unwrap_or(file);
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        out.extend(sql_only_in_store(rel, &text));
        out.extend(wire_types_only_in_core(rel, &text));
        out.extend(no_grab_bag_modules(rel));
    }
    Ok(out)
}

/// `cargo xtask tidy`: prints the violations, fails when there are any.
pub fn run() -> Result<()> {
    let violations = check(&crate::root())?;
    for v in &violations {
        eprintln!("tidy: {v}");
    }
    if !violations.is_empty() {
        bail!(
            "{} architecture invariant(s) broken (docs/ARCHITECTURE.md)",
            violations.len()
        );
    }
    println!("tidy: every architecture invariant holds");
    Ok(())
}

/// Every `.rs` file under `crates/` and `xtask/`, skipping build output.
fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "xtask"].iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Which layer a workspace crate sits in. A crate may depend (normally or for tests) only
/// on crates of lower layers: `peers-core` at the bottom; the store trait (`peers-store`)
/// and the test kit on it; the store backends (`peers-store-sqlite`, `peers-store-postgres`)
/// on those (a backend's tests may use the test kit); everything else (the binaries, the
/// test harness crates, xtask) at the top, so no product crate ever links a test harness,
/// no backend another backend or the broker, and no top crate another top crate.
fn layer(name: &str) -> u8 {
    match name {
        "peers-core" => 0,
        "peers-testkit" | "peers-store" => 1,
        n if n.starts_with("peers-store-") => 2,
        _ => 3,
    }
}

/// **Architecture invariant**: crates depend only on `peers-core` and downward.
fn crate_layers(root: &Path) -> Result<Vec<Violation>> {
    let mut manifests = vec![root.join("xtask/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates"))? {
        let m = entry?.path().join("Cargo.toml");
        if m.exists() {
            manifests.push(m);
        }
    }
    let mut out = Vec::new();
    for m in manifests {
        let text = std::fs::read_to_string(&m)?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("cannot parse {}", m.display()))?;
        let name = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        let mut deps: BTreeMap<String, &str> = BTreeMap::new();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(t) = doc.get(section).and_then(|t| t.as_table()) {
                for dep in t.keys().filter(|k| k.starts_with("peers")) {
                    deps.insert(dep.clone(), section);
                }
            }
        }
        for (dep, section) in deps {
            if layer(&dep) >= layer(&name) {
                out.push(Violation {
                    rule: "crates depend only on peers-core and downward",
                    path: m.strip_prefix(root).unwrap_or(&m).to_path_buf(),
                    what: format!(
                        "{name} (layer {}) has {dep} (layer {}) in [{section}]",
                        layer(&name),
                        layer(&dep)
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Whether `rel` is store code (the store crates, `crates/store*/`), the one place SQL may
/// be written.
fn is_store_code(rel: &Path) -> bool {
    let s = rel.to_string_lossy().replace('\\', "/");
    s.starts_with("crates/store")
}

/// What gives SQL away in Rust source: sqlx's query functions, the SQLite writer's direct
/// driver, and statements in strings.
const SQL_MARKS: &[&str] = &[
    "sqlx::query",
    "rusqlite::",
    "query_as(",
    "query_scalar(",
    "\"SELECT ",
    "\"INSERT ",
    "\"UPDATE ",
    "\"DELETE ",
    "\"PRAGMA ",
    "\"CREATE ",
    "\"BEGIN",
];

/// **Architecture invariant**: SQL lives only in the store.
fn sql_only_in_store(rel: &Path, text: &str) -> Vec<Violation> {
    if is_store_code(rel) || rel.ends_with("xtask/src/tidy.rs") {
        return Vec::new();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter_map(|(i, l)| {
            let mark = SQL_MARKS.iter().find(|m| l.contains(*m))?;
            Some(Violation {
                rule: "SQL lives only in the store",
                path: rel.to_path_buf(),
                what: format!("line {}: {mark}", i + 1),
            })
        })
        .collect()
}

/// **Architecture invariant**: types that cross the broker's wire live in `peers_core::wire`:
/// the broker defines no serde types of its own, so its bodies cannot drift from the ones
/// clients decode.
fn wire_types_only_in_core(rel: &Path, text: &str) -> Vec<Violation> {
    let s = rel.to_string_lossy().replace('\\', "/");
    if !s.starts_with("crates/broker/src/") {
        return Vec::new();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains("#[derive(") && l.contains("Serialize"))
        .map(|(i, _)| Violation {
            rule: "wire types live only in peers-core",
            path: rel.to_path_buf(),
            what: format!("line {}: a serde type in the broker", i + 1),
        })
        .collect()
}

/// **Architecture invariant**: nothing is called `utils` (or another grab-bag name): each
/// module is named for its one job.
fn no_grab_bag_modules(rel: &Path) -> Vec<Violation> {
    const GRAB_BAGS: &[&str] = &["utils", "helpers", "misc"];
    let bad = rel.iter().any(|part| {
        let p = part.to_string_lossy();
        let stem = p.strip_suffix(".rs").unwrap_or(&p);
        GRAB_BAGS.contains(&stem)
    });
    if bad {
        vec![Violation {
            rule: "nothing is called utils",
            path: rel.to_path_buf(),
            what: "a grab-bag module name; name it for its job".into(),
        }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The files of a tiny workspace that keeps every rule.
    const CLEAN: &[(&str, &str)] = &[
        (
            "xtask/Cargo.toml",
            "[package]\nname = \"xtask\"\n[dependencies]\npeers-core = { path = \"../crates/peers-core\" }\n",
        ),
        ("xtask/src/main.rs", "fn main() {}\n"),
        (
            "crates/peers-core/Cargo.toml",
            "[package]\nname = \"peers-core\"\n",
        ),
        (
            "crates/peers-core/src/wire.rs",
            "#[derive(Serialize, Deserialize)]\npub struct Send;\n",
        ),
        (
            "crates/testkit/Cargo.toml",
            "[package]\nname = \"peers-testkit\"\n[dependencies]\npeers-core.workspace = true\n",
        ),
        (
            "crates/broker/Cargo.toml",
            "[package]\nname = \"peers-broker\"\n[dependencies]\npeers-core.workspace = true\n[dev-dependencies]\npeers-testkit.workspace = true\n",
        ),
        (
            "crates/store/Cargo.toml",
            "[package]\nname = \"peers-store\"\n[dependencies]\npeers-core.workspace = true\n",
        ),
        (
            "crates/store-sqlite/Cargo.toml",
            "[package]\nname = \"peers-store-sqlite\"\n[dependencies]\npeers-store.workspace = true\n[dev-dependencies]\npeers-testkit.workspace = true\n",
        ),
        (
            "crates/store-sqlite/src/peers.rs",
            "sqlx::query(\"SELECT id FROM peers\");\n",
        ),
        (
            "crates/broker/src/api.rs",
            "// \"SELECT \" in a comment is fine\nfn send() {}\n",
        ),
    ];

    /// A tiny workspace that keeps every rule.
    fn clean_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in CLEAN {
            write(dir.path(), rel, text);
        }
        dir
    }

    /// What the check finds in the clean tree with `files` written over it.
    fn violations(files: &[(&str, &str)]) -> Vec<Violation> {
        let t = clean_tree();
        for (rel, text) in files {
            write(t.path(), rel, text);
        }
        check(t.path()).unwrap()
    }

    /// The one violation the check finds in the clean tree with `rel` written over it.
    fn only_violation(rel: &str, text: &str) -> Violation {
        let mut v = violations(&[(rel, text)]);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn the_workspace_keeps_every_invariant() {
        let v = check(&crate::root()).unwrap();
        assert!(
            v.is_empty(),
            "broken invariants:\n{}",
            v.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn a_clean_tree_passes() {
        let t = clean_tree();
        assert_eq!(check(t.path()).unwrap(), vec![]);
    }

    #[test]
    fn sql_outside_the_store_is_caught() {
        let sweep = "crates/broker/src/sweep.rs";
        let v = only_violation(sweep, "fn f() { sqlx::query(\"DELETE FROM leases\"); }\n");
        assert_eq!(v.rule, "SQL lives only in the store");
        assert_eq!(v.path, Path::new(sweep));
    }

    #[test]
    fn the_direct_sqlite_driver_outside_the_store_is_caught() {
        let v = only_violation(
            "crates/broker/src/sweep.rs",
            "fn f(c: &rusqlite::Connection) { c.execute_batch(\"VACUUM\"); }\n",
        );
        assert_eq!(v.rule, "SQL lives only in the store");
    }

    #[test]
    fn sql_in_the_broker_is_caught_even_in_a_module_called_store() {
        let v = only_violation(
            "crates/broker/src/store/peers.rs",
            "fn f() { sqlx::query(\"SELECT id FROM peers\"); }\n",
        );
        assert_eq!(v.rule, "SQL lives only in the store");
    }

    #[test]
    fn the_store_trait_depending_on_a_backend_is_caught() {
        let v = only_violation(
            "crates/store/Cargo.toml",
            "[package]\nname = \"peers-store\"\n[dev-dependencies]\npeers-store-sqlite.workspace = true\n",
        );
        assert!(v.what.contains("peers-store-sqlite"), "{}", v.what);
    }

    #[test]
    fn a_backend_depending_on_another_backend_is_caught() {
        let v = only_violation(
            "crates/store-sqlite/Cargo.toml",
            "[package]\nname = \"peers-store-sqlite\"\n[dependencies]\npeers-store-postgres.workspace = true\n",
        );
        assert!(v.what.contains("peers-store-postgres"), "{}", v.what);
    }

    #[test]
    fn a_product_crate_linking_a_test_harness_is_caught() {
        let v = violations(&[
            (
                "crates/e2e/Cargo.toml",
                "[package]\nname = \"peers-e2e\"\n[dependencies]\npeers-core.workspace = true\n",
            ),
            (
                "crates/peers-cli/Cargo.toml",
                "[package]\nname = \"peers-cli\"\n[dependencies]\npeers-core.workspace = true\n[dev-dependencies]\npeers-e2e = { path = \"../e2e\" }\n",
            ),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        let v = &v[0];
        assert_eq!(v.rule, "crates depend only on peers-core and downward");
        assert!(v.what.contains("peers-e2e"), "{}", v.what);
    }

    #[test]
    fn core_depending_upward_is_caught() {
        only_violation(
            "crates/peers-core/Cargo.toml",
            "[package]\nname = \"peers-core\"\n[dev-dependencies]\npeers-testkit.workspace = true\n",
        );
    }

    #[test]
    fn a_serde_type_in_the_broker_is_caught() {
        let serde_type = "#[derive(Debug, Serialize)]\nstruct Mine;\n";
        let v = only_violation("crates/broker/src/api.rs", serde_type);
        assert_eq!(v.rule, "wire types live only in peers-core");
    }

    #[test]
    fn a_utils_module_is_caught() {
        let v = violations(&[
            ("crates/broker/src/utils.rs", "pub fn x() {}\n"),
            ("crates/broker/src/helpers/mod.rs", "pub fn y() {}\n"),
        ]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|v| v.rule == "nothing is called utils"));
    }
}
