//! Architecture checks written as ordinary tests: the rules of ARCHITECTURE.md
//! that a compiler does not enforce.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates that do IO, or drag an async runtime or a database along.
const IO_CRATES: [&str; 8] = [
    "tokio",
    "reqwest",
    "rusqlite",
    "axum",
    "eventstore",
    "hyper",
    "mio",
    "libsqlite3-sys",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

fn metadata() -> &'static Value {
    static METADATA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    METADATA.get_or_init(read_metadata)
}

fn read_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// The names of every package in `root`'s normal (non-dev, non-build) dependency tree.
fn normal_dependency_tree(metadata: &Value, root: &str) -> BTreeSet<String> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root_id = names
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .expect("root package exists");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(names[dep_id].to_owned()) {
                stack.push(dep_id);
            }
        }
    }
    seen
}

#[test]
fn domain_and_projections_do_no_io() {
    // The pure crates must not even be able to reach a socket, a file database or a runtime.
    let metadata = metadata();
    for pure in ["paycode-domain", "paycode-projections"] {
        let tree = normal_dependency_tree(metadata, pure);
        let offending: Vec<&str> = IO_CRATES
            .iter()
            .copied()
            .filter(|c| tree.contains(*c))
            .collect();
        assert!(offending.is_empty(), "{pure} depends on {offending:?}");
        assert!(
            !tree.is_empty() || pure == "paycode-projections",
            "{pure} has a resolved tree"
        );
    }
    // The check itself sees IO where it exists.
    let adapters = normal_dependency_tree(metadata, "paycode-adapters");
    assert!(
        adapters.contains("tokio") && adapters.contains("rusqlite"),
        "{adapters:?}"
    );
}

#[test]
fn dependencies_point_inward() {
    // app -> sandbox -> adapters, projections -> domain; never the other way.
    let metadata = metadata();
    let domain = normal_dependency_tree(metadata, "paycode-domain");
    assert!(
        domain.iter().all(|name| !name.starts_with("paycode")),
        "domain depends on {domain:?}"
    );
    let adapters = normal_dependency_tree(metadata, "paycode-adapters");
    for outer in ["paycode-sandbox", "paycode-projections", "paycode"] {
        assert!(!adapters.contains(outer), "adapters depend on {outer}");
    }
    let sandbox = normal_dependency_tree(metadata, "paycode-sandbox");
    assert!(sandbox.contains("paycode-adapters"), "{sandbox:?}");
    assert!(!sandbox.contains("paycode-projections") && !sandbox.contains("paycode"));
    let projections = normal_dependency_tree(metadata, "paycode-projections");
    for outer in ["paycode-adapters", "paycode-sandbox", "paycode"] {
        assert!(
            !projections.contains(outer),
            "projections depend on {outer}"
        );
    }
}

/// The names of the `[section]` table of `krate`'s Cargo.toml
/// (`name.workspace = true` or `name = ...`, one a line).
fn manifest_dependencies(krate: &str, section: &str) -> BTreeSet<String> {
    let path = workspace_root().join(krate).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let header = format!("[{section}]");
    manifest
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let end = line.find(['.', '=', ' ']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

#[test]
fn only_the_sandbox_serves_http_or_makes_rsa_keys_below_app() {
    // The adapters call out; answering HTTP as a channel does is the
    // sandbox's (paycode-sandbox). axum may stay a dev-dependency of the
    // adapters, for their clients' tests against a local server.
    let adapters = manifest_dependencies("adapters", "dependencies");
    assert!(adapters.contains("paycode-domain"), "read: {adapters:?}");
    assert!(
        !adapters.contains("axum"),
        "adapters/Cargo.toml [dependencies] names axum"
    );
    // app makes and reads the sandbox's RSA keys through paycode-sandbox.
    let app = manifest_dependencies("app", "dependencies");
    assert!(app.contains("paycode-sandbox"), "read: {app:?}");
    assert!(
        !app.contains("rsa"),
        "app/Cargo.toml [dependencies] names rsa"
    );
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_source_file_says_what_it_is_for() {
    // A `//!` paragraph at the top of each file (STYLE.md, Habits).
    let root = workspace_root();
    let mut files = Vec::new();
    for krate in [
        "domain",
        "adapters",
        "adapters/sandbox",
        "projections",
        "app",
        "tests",
    ] {
        for dir in ["src", "tests"] {
            let path = root.join(krate).join(dir);
            if path.is_dir() {
                rust_files(&path, &mut files);
            }
        }
    }
    assert!(files.len() > 10, "found the sources: {files:?}");
    let missing: Vec<String> = files
        .iter()
        .filter(|file| {
            !std::fs::read_to_string(file)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|file| file.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! paragraph: {missing:?}"
    );
}

#[test]
fn money_crates_deny_float_arithmetic() {
    // No floats near money: domain, adapters and the sandbox deny
    // clippy::float_arithmetic crate-wide.
    let root = workspace_root();
    for krate in ["domain", "adapters", "adapters/sandbox"] {
        let lib = std::fs::read_to_string(root.join(krate).join("src/lib.rs")).unwrap();
        assert!(
            lib.contains("#![deny(clippy::float_arithmetic)]"),
            "{krate}/src/lib.rs"
        );
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("unsafe_code = \"forbid\""));
}

/// The library half of a Rust file: everything before its first `#[cfg(test)]`.
fn production_part(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn app_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("app/src"), &mut files);
    assert!(files.len() > 20, "found the app's sources: {files:?}");
    files
}

#[test]
fn the_app_is_in_rooms_and_nothing_imports_the_command_line() {
    // app/src holds the binary's two roots and one folder per kind of thing;
    // the command line (cli/, declared by main.rs) is imported by nothing.
    let src = workspace_root().join("app/src");
    let mut entries: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            "bench", "cli", "config", "http", "lib.rs", "main.rs", "read", "service"
        ]
    );
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(!lib.contains("mod cli"), "lib.rs declares the command line");
    for file in app_sources() {
        let relative = file.strip_prefix(&src).unwrap();
        if relative.starts_with("cli") || relative == Path::new("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("cli::"),
            "{} imports the command line",
            relative.display()
        );
    }
}

#[test]
fn the_ledger_is_the_only_write_path() {
    // Outside the ledger only the benchmarks (which measure the store itself)
    // append to a store; tests (`#[cfg(test)]` code, `tests.rs` modules) may
    // set stores up as they like.
    let src = workspace_root().join("app/src");
    let writers: Vec<String> = app_sources()
        .into_iter()
        .filter(|file| !file.ends_with("tests.rs"))
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            production_part(&text).contains(".append(")
        })
        .map(|file| file.strip_prefix(&src).unwrap().display().to_string())
        .filter(|file| !file.starts_with("bench/") && file != "service/ledger.rs")
        .collect();
    assert!(
        writers.is_empty(),
        "files that append around the ledger: {writers:?}"
    );
}

#[test]
fn the_repository_stands_alone() {
    // No file points at a folder beside the clone: docs, vectors and tests are all inside.
    let root = workspace_root();
    let beside = ["..", "/shared"].concat();
    let mut offenders = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path)
                && text.contains(&beside)
            {
                offenders.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "files pointing outside the repository: {offenders:?}"
    );
}

#[test]
fn pure_crates_cannot_read_the_clock_or_make_ids() {
    // domain and projections take `now` and ids from the caller: their
    // clippy.toml disallows the clock and id generators, and CI runs clippy.
    for krate in ["domain", "projections"] {
        let config = std::fs::read_to_string(workspace_root().join(krate).join("clippy.toml"))
            .unwrap_or_else(|error| panic!("{krate}/clippy.toml: {error}"));
        for method in [
            "chrono::Utc::now",
            "std::time::SystemTime::now",
            "uuid::Uuid::new_v4",
            "uuid::Uuid::now_v7",
        ] {
            assert!(
                config.contains(&format!("\"{method}\"")),
                "{krate}/clippy.toml does not disallow {method}"
            );
        }
    }
}

#[test]
fn the_architecture_map_names_only_paths_that_exist() {
    // Every `path/with/a/slash` in ARCHITECTURE.md is a file or folder of the
    // repository (from the root, or from a package or source folder the text is about).
    let root = workspace_root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for (index, quoted) in map.split('`').enumerate() {
        let looks_like_path = index % 2 == 1
            && quoted.contains('/')
            && !quoted.contains(' ')
            && !quoted.contains('{')
            && !quoted.contains("::")
            && (quoted.ends_with('/')
                || [".rs", ".md", ".toml"]
                    .iter()
                    .any(|ext| quoted.ends_with(ext)));
        if !looks_like_path {
            continue;
        }
        named += 1;
        let exists = [
            "",
            "tests",
            "app",
            "domain/src",
            "adapters/src",
            "adapters/sandbox/src",
            "projections/src",
            "app/src",
        ]
        .iter()
        .any(|base| root.join(base).join(quoted).exists());
        if !exists {
            missing.push(quoted.to_owned());
        }
    }
    assert!(named > 30, "read the paths: {named}");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn ci_installs_a_browser_and_runs_the_console_browser_tests() {
    // The console's browser tests are #[ignore]d for a plain `cargo test`;
    // CI installs Chromium and its driver and runs them explicitly.
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    for step in [
        "apt-get install -y --no-install-recommends chromium chromium-driver",
        "cargo test -p paycode --locked --test it console_browser -- --ignored",
    ] {
        assert!(ci.contains(step), ".ci/run does not run `{step}`");
    }
}

#[test]
fn ci_checks_the_dependency_policy_and_the_accepted_rsa_advisory_stays_harmless() {
    // CI runs cargo-deny over Cargo.lock (deny.toml): licences, bans and
    // sources always, advisories where the database can be fetched.
    let root = workspace_root();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    for step in [
        "\"$deny\" --locked check licenses bans sources",
        "\"$deny\" --locked check advisories",
    ] {
        assert!(ci.contains(step), ".ci/run does not run `{step}`");
    }
    // The one accepted advisory is listed by id with its reason, not
    // silenced wholesale.
    let policy: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("deny.toml")).unwrap()).unwrap();
    let ignored = policy["advisories"]["ignore"].as_array().unwrap();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0]["id"].as_str(), Some("RUSTSEC-2023-0071"));
    assert!(ignored[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // RUSTSEC-2023-0071 is a timing attack on RSA decryption: it is
    // accepted because nothing here decrypts with RSA (only signs and
    // verifies). Using RSA encryption would make it matter.
    let mut files = Vec::new();
    for krate in [
        "domain",
        "adapters",
        "adapters/sandbox",
        "projections",
        "app",
    ] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    let decrypting: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            ["Pkcs1v15Encrypt", "Oaep", ".decrypt("]
                .iter()
                .any(|needle| text.contains(needle))
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        decrypting.is_empty(),
        "RSA decryption makes RUSTSEC-2023-0071 matter (deny.toml): {decrypting:?}"
    );
}

#[test]
fn ci_fuzzes_the_running_api_against_its_document_after_the_tests() {
    // .ci/run runs the README's test command, then .ci/api-fuzz, which holds
    // the running service to /openapi.json with every response check.
    let root = workspace_root();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let tests = ci
        .find("cargo test --workspace --locked")
        .expect("CI runs the tests");
    let fuzz = ci.find("\n.ci/api-fuzz").expect("CI runs .ci/api-fuzz");
    assert!(tests < fuzz, "the fuzzing runs after the tests");
    let fuzzer = std::fs::read_to_string(root.join(".ci/api-fuzz")).unwrap();
    for needle in [
        "/openapi.json",
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "trap stop EXIT",
    ] {
        assert!(fuzzer.contains(needle), ".ci/api-fuzz lacks `{needle}`");
    }
}
