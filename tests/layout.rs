//! The house's rules, checked on the source itself: no two files of `src/` import each
//! other, directly or around a ring. A module's tests (`#[cfg(test)] mod tests`) may use
//! anything; only the code a build ships counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, keyed by its module path (`host::swap`, `crate` for lib.rs).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = match parts.join("::").as_str() {
                "lib" => "crate".to_string(),
                other => other.to_string(),
            };
            (name, path)
        })
        .collect()
}

/// The text a build compiles: no comments, no strings, no `#[cfg(test)]` module.
fn shipped_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"r#\"") || b[i..].starts_with(b"r\"") {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let end: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&end) {
                i += 1;
            }
            i += end.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            out.push_str("' '");
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths a file names: `crate::a::b`, `super::c`, `self::d`, `kubejoin::e` and the
/// trees of `use` (`crate::{a, b::{c, d}}`), each as its segments from the crate's root.
fn paths(code: &str, module: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = if module == "crate" {
        vec![]
    } else {
        module.split("::").map(String::from).collect()
    };
    // `super` of a/b.rs is a; of a/mod.rs (module a) it is the crate; `self` is the module.
    let parent = here[..here.len().saturating_sub(1)].to_vec();
    let tokens = tokenize(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let prefix = match tokens[i].as_str() {
            "crate" | "kubejoin" => Some(vec![]),
            "super" => Some(parent.clone()),
            "self" => Some(here.clone()),
            _ => None,
        };
        let preceded_by_path = i > 0 && tokens[i - 1] == "::";
        match prefix {
            Some(prefix) if !preceded_by_path && tokens.get(i + 1).is_some_and(|t| t == "::") => {
                i = tree(&tokens, i + 2, prefix, &mut out);
            }
            _ => i += 1,
        }
    }
    out
}

/// Reads one use-tree from `tokens[i..]` below `prefix`; returns the index after it.
fn tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some(_) => i = tree(tokens, i, prefix.clone(), out),
                        None => return i,
                    }
                }
            }
            Some("super") => {
                prefix.pop();
                i += 1;
            }
            Some("self") => i += 1,
            Some(t) if t.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                prefix.push(t.to_string());
                i += 1;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
        if tokens.get(i).is_some_and(|t| t == "::") {
            i += 1;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    word.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(word);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".into());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Which file imports which: an edge for every path that leads into another file's module.
/// A file's own submodules declared with `mod x;` and named as `x::...` count too.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &mods {
        if module == "main" {
            continue;
        }
        let code = shipped_code(&std::fs::read_to_string(path).unwrap());
        let mut named = paths(&code, module);
        // Children named directly from their parent: `swap::plan(..)` in host/mod.rs.
        let here: Vec<String> = if module == "crate" {
            vec![]
        } else {
            module.split("::").map(String::from).collect()
        };
        let tokens = tokenize(&code);
        for w in tokens.windows(3) {
            if w[1] == "::" && w[0] != "::" {
                let mut p = here.clone();
                p.push(w[0].clone());
                named.push(p);
            }
        }
        for p in named {
            let target = (1..=p.len())
                .rev()
                .map(|n| p[..n].join("::"))
                .find(|m| mods.contains_key(m));
            let Some(target) = target else { continue };
            if &target != module && target != "main" {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // The crate root declares every module; that is not an import.
    edges.remove("crate");
    edges
}

/// The strongly connected groups of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.out.push(group);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_two_files_of_src_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let rings = cycles(&edges);
    let shown: Vec<String> = rings
        .iter()
        .map(|g| {
            let inner: Vec<String> = g
                .iter()
                .map(|m| {
                    let to: Vec<&str> = edges[m]
                        .iter()
                        .filter(|t| g.contains(t))
                        .map(String::as_str)
                        .collect();
                    format!("{m} -> {}", to.join(", "))
                })
                .collect();
            inner.join("; ")
        })
        .collect();
    assert!(
        rings.is_empty(),
        "files of src/ that import each other (move what both need into a module below them):\n{}",
        shown.join("\n")
    );
}

#[test]
fn the_import_graph_reader_sees_uses_groups_and_parents() {
    let code = shipped_code(
        "use crate::{a::{b, c::D}, e};\nuse super::f::G; // crate::commented\nfn x() { self::h::i(); let s = \"crate::in_string\"; }\n",
    );
    let mut got = paths(&code, "host::swap");
    got.sort();
    let want: Vec<Vec<String>> = [
        vec!["a", "b"],
        vec!["a", "c", "D"],
        vec!["e"],
        vec!["host", "f", "G"],
        vec!["host", "swap", "h", "i"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
    let mut ring = BTreeMap::new();
    ring.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    ring.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    ring.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    ring.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&ring), vec![vec!["a", "b", "c"]]);
}

/// The README's exit-status table and the unit's `RestartPreventExitStatus=` are the
/// code's one table.
#[test]
fn the_exit_statuses_are_one_table() {
    use kubejoin::failure::exit;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&exit::markdown()),
        "README.md's exit-status table differs from src/failure.rs; it should read:\n{}",
        exit::markdown()
    );
    let unit = std::fs::read_to_string(root.join("systemd/kubejoin.service")).unwrap();
    let prevent: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .collect();
    assert_eq!(prevent, [exit::restart_prevent().as_str()]);
}

/// The string literals a build ships (outside `#[cfg(test)] mod tests`).
fn shipped_strings(text: &str) -> Vec<String> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            i += if b.get(i + 2) == Some(&b'\'') { 3 } else { 4 };
        } else if b[i] == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push(text[start..i.min(text.len())].to_string());
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// "The seed" is the project's name for its source document: no user can know it. It
/// never appears in what kubejoin prints, its help and man pages, or its example
/// configuration.
#[test]
fn users_never_read_the_projects_own_words() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let said = |text: &str| {
        text.split(|c: char| !c.is_ascii_alphabetic())
            .any(|w| w.eq_ignore_ascii_case("seed") || w.eq_ignore_ascii_case("seeds"))
    };
    let mut found = Vec::new();
    for (module, path) in modules(&root.join("src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for s in shipped_strings(&text) {
            if said(&s) {
                found.push(format!("{module}: {s:?}"));
            }
        }
    }
    fn help(cmd: &mut clap::Command, out: &mut String) {
        out.push_str(&cmd.render_long_help().to_string());
        for sub in cmd.get_subcommands_mut() {
            help(sub, out);
        }
    }
    let mut text = String::new();
    help(
        &mut <kubejoin::cli::Cli as clap::CommandFactory>::command(),
        &mut text,
    );
    if said(&text) {
        found.push("kubejoin --help (a doc comment in src/cli.rs)".into());
    }
    let example = std::fs::read_to_string(root.join("packaging/config.toml.example")).unwrap();
    if said(&example) {
        found.push("packaging/config.toml.example".into());
    }
    assert!(
        found.is_empty(),
        "\"seed\" where users read it:\n{}",
        found.join("\n")
    );
}

/// The README's "Files written" is the code's own list.
#[test]
fn the_readme_lists_every_file_kubejoin_writes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = kubejoin::footprint::markdown();
    assert!(
        readme.contains(&table),
        "README.md's \"Files written\" differs from src/footprint.rs; it should read:\n{table}"
    );
}

/// The layers, top to bottom: the commands (and their definitions, `cli`); the join, the control plane and the other
/// commands' libraries; the concerns and the edges. Nothing imports a layer above it.
#[test]
fn nothing_imports_a_layer_above_it() {
    fn layer(module: &str) -> u8 {
        let under = |p: &str| module == p || module.starts_with(&format!("{p}::"));
        if under("cmd") || module == "cli" {
            0
        } else if ["join", "cluster", "doctor", "reset", "footprint"]
            .iter()
            .any(|p| under(p))
        {
            1
        } else {
            2
        }
    }
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let upward: Vec<String> = edges
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |t| (from, t)))
        .filter(|(from, to)| layer(to) < layer(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports of a layer above:\n{}",
        upward.join("\n")
    );
}
