//! The shape of `src/` (docs/architecture.md): the source files import one another without a
//! cycle, the request-path modules never reach up into config loading, the serving layers or the
//! admin API, the raw config schema and the header rules stay leaves, and files and functions stay
//! a size a newcomer can read. Read from the source text, so it fails on the commit that breaks a
//! rule, whatever else compiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/` files by path relative to `src/` (`auth/jwt/mod.rs`), without `main.rs`.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src is readable")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(root).expect("under src");
                let rel = rel.to_string_lossy().replace('\\', "/");
                if rel != "main.rs" {
                    out.insert(rel, std::fs::read_to_string(&p).expect("readable"));
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The module path of a file: `auth/jwt/mod.rs` -> `auth::jwt`, `lib.rs` -> ``.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code that counts as the file's dependencies: no comments, no `pub use` re-exports (a
/// parent naming its children's items for outside users), no `#[cfg(test)]` modules.
fn code_of(src: &str) -> String {
    let end = src.find("#[cfg(test)]").unwrap_or(src.len());
    src[..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with("pub use "))
        .map(|l| l.split(" // ").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::a::b` / `super::a` / `self::a` path in `code`, as module paths from the crate
/// root, with `use` trees (`use crate::{a, b::{c, d}}`) expanded.
fn paths_in(code: &str, me: &[String], is_mod: bool) -> Vec<Vec<String>> {
    // `self::` in `x/mod.rs` is `x`; in `x/y.rs`, `x::y`. `super::` is one level up from that.
    let here: Vec<String> = me.to_vec();
    let parent: Vec<String> = if is_mod || here.is_empty() {
        here.iter()
            .take(here.len().saturating_sub(1))
            .cloned()
            .collect()
    } else {
        here[..here.len() - 1].to_vec()
    };
    let base = |root: &str| -> Option<Vec<String>> {
        match root {
            "crate" => Some(Vec::new()),
            "super" => Some(parent.clone()),
            "self" => Some(here.clone()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    // Expand a use tree rooted at `prefix`.
    fn tree(prefix: &[String], t: &str, out: &mut Vec<Vec<String>>) {
        let t = t.trim();
        if let Some(open) = t.find('{') {
            let head: Vec<String> = t[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let mut p = prefix.to_vec();
            p.extend(head);
            let inner = &t[open + 1..t.rfind('}').unwrap_or(t.len())];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        tree(&p, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            tree(&p, &inner[start..], out);
        } else {
            let mut p = prefix.to_vec();
            p.extend(
                t.split(" as ")
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                    .map(str::to_owned),
            );
            out.push(p);
        }
    }
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = i == 0 || !ident_char(rest[..i].chars().last().unwrap_or(' '));
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let stmt = after[..end].trim();
        if before_ok {
            if let Some((root, t)) = stmt.split_once("::") {
                if let Some(b) = base(root.trim()) {
                    tree(&b, t, &mut out);
                }
            }
        }
        rest = &after[end.min(after.len())..];
    }
    // Paths written in code: `crate::x::y(...)`.
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(root) {
            let at = from + i;
            from = at + root.len();
            if at > 0 && ident_char(code[..at].chars().last().unwrap_or(' ')) {
                continue;
            }
            let segs: Vec<String> = code[at + root.len()..]
                .split("::")
                .map(|s| s.chars().take_while(|c| ident_char(*c)).collect::<String>())
                .take_while(|s| !s.is_empty())
                .collect();
            if let Some(mut b) = base(root.trim_end_matches("::")) {
                b.extend(segs);
                out.push(b);
            }
        }
    }
    out
}

/// File -> the files it imports from.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = sources();
    let by_module: BTreeMap<Vec<String>, String> =
        src.keys().map(|f| (module_of(f), f.clone())).collect();
    let mut g = BTreeMap::new();
    for (file, text) in &src {
        let me = module_of(file);
        let is_mod = file.ends_with("mod.rs") || file == "lib.rs";
        let mut deps = BTreeSet::new();
        for p in paths_in(&code_of(text), &me, is_mod) {
            // The longest prefix of the path that is a module file is where the item lives.
            if let Some(target) = (1..=p.len()).rev().find_map(|n| by_module.get(&p[..n])) {
                if target != file {
                    deps.insert(target.clone());
                }
            }
        }
        g.insert(file.clone(), deps);
    }
    g
}

#[test]
fn source_files_import_each_other_without_a_cycle() {
    let g = graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        f: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(f.to_owned(), 1);
        stack.push(f.to_owned());
        for d in g.get(f).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == d).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(f.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for f in g.keys() {
        if state.get(f.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(f, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", c.join(" -> "));
            }
        }
    }
    // The check itself sees imports: the request path's best-known edges are there.
    assert!(g["proxy.rs"].contains("route.rs"), "{:?}", g["proxy.rs"]);
    assert!(g["auth/chain.rs"].contains("auth/authenticator.rs"));
    assert!(g["config/compile.rs"].contains("upstream/mod.rs"));
}

/// The groups of docs/architecture.md's module map, from the bottom up. An entry ending in `/`
/// takes the files below that folder that no group names exactly.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "values and leaves",
        &[
            "values.rs",
            "clock.rs",
            "digest.rs",
            "error.rs",
            "normalize.rs",
            "config/raw.rs",
            "config/issues.rs",
            "config/locate.rs",
            "devpki.rs",
            "return_target.rs",
        ],
    ),
    ("connections and TLS", &["conn.rs", "tls.rs"]),
    (
        "what the chain works with",
        &[
            "auth/identity.rs",
            "auth/rate_limit.rs",
            "auth/evict.rs",
            "auth/scope.rs",
            "auth/revocation.rs",
            "auth/request.rs",
            "auth/shared_limit.rs",
            "keys.rs",
            "oauth/",
            "state.rs",
        ],
    ),
    ("the trust boundary", &["headers.rs"]),
    ("authenticators and the chain", &["auth/"]),
    ("the upstream", &["upstream/", "body.rs"]),
    (
        "routes",
        &["router.rs", "cors.rs", "assertion.rs", "route.rs"],
    ),
    ("telemetry", &["telemetry/"]),
    ("the store", &["store/"]),
    ("config", &["config/"]),
    (
        "running",
        &[
            "gateway.rs",
            "proxy.rs",
            "explain.rs",
            "oauth_server/",
            "admin/",
            "listener.rs",
            "server.rs",
            "admin_client.rs",
            "lib.rs",
        ],
    ),
];

fn layer_of(file: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, files)| files.contains(&file))
        .or_else(|| {
            LAYERS.iter().position(|(_, files)| {
                files
                    .iter()
                    .any(|f| f.ends_with('/') && file.starts_with(f))
            })
        })
}

#[test]
fn every_file_imports_only_from_its_group_or_below() {
    let g = graph();
    let mut bad = Vec::new();
    for (f, deps) in &g {
        let Some(l) = layer_of(f) else {
            bad.push(format!(
                "{f} is in no group of LAYERS (docs/architecture.md)"
            ));
            continue;
        };
        for d in deps {
            if layer_of(d).is_some_and(|dl| dl > l) {
                bad.push(format!(
                    "{f} ({}) imports {d} ({})",
                    LAYERS[l].0,
                    LAYERS[layer_of(d).unwrap_or(0)].0
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Files of the request path: what runs for every request once the config is compiled.
fn request_path(file: &str) -> bool {
    [
        "normalize.rs",
        "router.rs",
        "route.rs",
        "headers.rs",
        "error.rs",
        "conn.rs",
        "body.rs",
        "keys.rs",
    ]
    .contains(&file)
        || file.starts_with("auth/")
        || file.starts_with("upstream/")
}

#[test]
fn the_request_path_never_reaches_up() {
    let g = graph();
    // From config, only the raw schema (a runtime type compiles itself from its section) and
    // the issue collector.
    let above = |d: &str| {
        (d.starts_with("config/") && d != "config/raw.rs" && d != "config/issues.rs")
            || d.starts_with("admin/")
            || [
                "proxy.rs",
                "server.rs",
                "listener.rs",
                "gateway.rs",
                "explain.rs",
            ]
            .contains(&d)
    };
    let mut bad = Vec::new();
    let mut checked = 0;
    for (f, deps) in &g {
        if request_path(f) {
            checked += 1;
            bad.extend(
                deps.iter()
                    .filter(|d| above(d))
                    .map(|d| format!("{f} -> {d}")),
            );
        }
    }
    assert!(checked > 20, "only {checked} request-path files found");
    assert!(
        bad.is_empty(),
        "request-path files import from above: {bad:#?}"
    );
}

#[test]
fn the_raw_schema_and_the_header_rules_are_leaves() {
    let g = graph();
    let raw: Vec<_> = g["config/raw.rs"].iter().collect();
    assert_eq!(raw, ["values.rs"], "config/raw.rs imports only value types");
    // The trust boundary's rules: pure functions of headers and what the chain proved.
    let headers: Vec<_> = g["headers.rs"].iter().collect();
    assert_eq!(headers, ["auth/identity.rs", "conn.rs"]);
}

/// Function bodies longer than `max` lines, as `file:line name (n lines)`; a function starts at
/// a line `fn name(` (after visibility and `async`) and ends at the first line holding only `}` at
/// its indentation (rustfmt's layout).
fn long_functions(file: &str, text: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        let t = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ")
            .trim_start_matches("async ");
        let Some(name) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = name.chars().take_while(|c| ident_char(*c)).collect();
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(n) = lines[i + 1..].iter().position(|x| *x == close) {
            if n + 2 > max {
                out.push(format!("{file}:{} {name} ({} lines)", i + 1, n + 2));
            }
        }
    }
    out
}

#[test]
fn functions_and_files_stay_readable() {
    let mut long = Vec::new();
    let mut big = Vec::new();
    for (f, text) in sources() {
        if request_path(&f) || f.starts_with("config/") || f == "proxy.rs" {
            long.extend(long_functions(&f, &text, 150));
        }
        let n = text.lines().count();
        // A longer file says why at its top.
        if n > 700 && !text.lines().take(30).any(|l| l.contains("is long because")) {
            big.push(format!("{f} ({n} lines)"));
        }
    }
    assert!(long.is_empty(), "functions over 150 lines: {long:#?}");
    assert!(big.is_empty(), "files over 700 lines: {big:#?}");
    // The measure works: a function of 200 lines is found.
    let sample = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(200));
    assert_eq!(long_functions("x.rs", &sample, 150).len(), 1);
}

/// README.md's "Refusal reasons" table lists every `Reason` with its status, public `error` code
/// and source, and nothing else: dashboards and alerts are written from it.
#[test]
fn every_reason_is_in_the_readme_table() {
    use portcullis::error::Reason;
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("### Refusal reasons")
        .nth(1)
        .expect("a `### Refusal reasons` section");
    let section = section.split("\n#").next().unwrap_or(section);
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    let table: BTreeMap<&str, &Vec<String>> = rows.iter().map(|r| (r[0].as_str(), r)).collect();
    assert_eq!(table.len(), rows.len(), "a reason is listed twice");
    for r in Reason::ALL {
        let row = table
            .get(r.name())
            .unwrap_or_else(|| panic!("README.md's table lacks `{}`", r.name()));
        let want = [
            r.name().to_owned(),
            r.status().as_u16().to_string(),
            r.error().to_owned(),
            r.source().as_str().to_owned(),
        ];
        assert_eq!(&row[..4], &want[..], "README.md's row of `{}`", r.name());
        assert!(!row[4].is_empty(), "`{}` has no description", r.name());
    }
    assert_eq!(
        rows.len(),
        Reason::ALL.len(),
        "README.md lists reasons the code does not have"
    );
}

/// docs/architecture.md names code that exists: every `path::name` it mentions is a function,
/// type or module of `src/`, so the walk cannot silently go stale.
#[test]
fn the_architecture_document_names_code_that_exists() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md");
    let src = sources();
    let all: String = src.values().map(String::as_str).collect();
    let defines = |name: &str| {
        ["fn ", "struct ", "enum ", "trait ", "type ", "mod "]
            .iter()
            .any(|k| {
                all.match_indices(&format!("{k}{name}")).any(|(i, m)| {
                    let next = all[i + m.len()..].chars().next().unwrap_or(' ');
                    !ident_char(next)
                })
            })
            || src
                .keys()
                .any(|f| module_of(f).last().is_some_and(|m| m == name))
    };
    let mut names = 0;
    let mut missing = Vec::new();
    for code in doc.split('`').skip(1).step_by(2) {
        if !code.contains("::") || !code.chars().all(|c| ident_char(c) || c == ':') {
            continue;
        }
        names += 1;
        for seg in code.split("::") {
            if !defines(seg) {
                missing.push(format!("{code} ({seg})"));
            }
        }
    }
    assert!(names > 40, "only {names} names found in the document");
    assert!(
        missing.is_empty(),
        "docs/architecture.md names what src/ does not define: {missing:#?}"
    );
}
