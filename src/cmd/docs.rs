//! `kubejoin manpage` and `kubejoin completions`: the man pages and shell completions the
//! packages install, from the command-line definitions.

use std::path::Path;

use crate::cli::Cli;
use crate::failure::Failure;
use crate::fsutil;

/// Shell completions for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "kubejoin", &mut std::io::stdout());
    Ok(())
}

pub fn manpage(dir: Option<&Path>) -> Result<(), Failure> {
    let cmd = <Cli as clap::CommandFactory>::command().name("kubejoin");
    let render = |cmd: clap::Command| {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.disable_help_subcommand(true))
            .section("8")
            .render(&mut page)
            .map(|()| page)
            .map_err(|e| anyhow::Error::from(e).context("cannot render the man page"))
    };
    let Some(dir) = dir else {
        use std::io::Write;
        std::io::stdout()
            .write_all(&render(cmd)?)
            .map_err(|e| anyhow::Error::from(e).context("cannot write the man page"))?;
        return Ok(());
    };
    // kubejoin(8), then kubejoin-<command>(8) for each command, as the first page names them.
    // Each page is named kubejoin-run and so on; its synopsis says `kubejoin run`.
    fn pages(cmd: clap::Command, out: &mut Vec<clap::Command>) {
        let bin = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
        for sub in cmd.get_subcommands() {
            let name = format!("{}-{}", cmd.get_name(), sub.get_name());
            let sub_bin = format!("{bin} {}", sub.get_name());
            pages(sub.clone().name(name).bin_name(sub_bin), out);
        }
        out.push(cmd);
    }
    let mut all = Vec::new();
    pages(cmd.bin_name("kubejoin"), &mut all);
    for cmd in all {
        let path = dir.join(format!("{}.8", cmd.get_name()));
        fsutil::write_atomic(&path, &render(cmd)?, 0o644)?;
    }
    let page = config_page(EXAMPLE, env!("CARGO_PKG_VERSION"));
    fsutil::write_atomic(&dir.join(CONFIG_PAGE), page.as_bytes(), 0o644)?;
    Ok(())
}

/// The configuration's man page: the example configuration the packages install, whose
/// comments are its documentation.
pub const CONFIG_PAGE: &str = "kubejoin-config.toml.5";
const EXAMPLE: &str = include_str!("../../packaging/config.toml.example");

/// A line of the example: a section, a key (commented out or not, with its value and
/// an inline comment), a preformatted line (`#` then two or more spaces), prose, or blank.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Section(&'a str),
    Key {
        key: &'a str,
        value: &'a str,
        note: Option<&'a str>,
    },
    Pre(&'a str),
    Prose(&'a str),
    Blank,
}

fn classify(line: &str) -> Line<'_> {
    let bare = line
        .strip_prefix('#')
        .map(|l| l.strip_prefix(' ').unwrap_or(l));
    let text = bare.unwrap_or(line);
    if text.trim().is_empty() {
        return Line::Blank;
    }
    if let Some(name) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'))
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
    {
        return Line::Section(name);
    }
    if let Some((key, rest)) = text.split_once(" = ")
        && !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        let (value, note) = match rest.split_once("  #") {
            Some((v, n)) => (v.trim_end(), Some(n.trim_start_matches('#').trim())),
            None => (rest, None),
        };
        return Line::Key { key, value, note };
    }
    if bare.is_some_and(|b| b.starts_with("  ")) {
        return Line::Pre(bare.unwrap_or_default());
    }
    Line::Prose(text)
}

/// What a run of the example's lines becomes on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One paragraph, its lines joined.
    Prose,
    /// Indented, as written.
    Pre,
    /// Indented example lines, each key bold.
    Keys,
}

struct Block {
    kind: Kind,
    lines: Vec<Vec<roff::Inline>>,
}

/// Puts a gathered block on the page.
fn close(page: &mut roff::Roff, block: Option<Block>) {
    let Some(block) = block else { return };
    if block.kind == Kind::Prose {
        // One line of text: the comment's lines joined by spaces.
        let joined: Vec<roff::Inline> = block
            .lines
            .into_iter()
            .enumerate()
            .flat_map(|(i, l)| (i > 0).then(|| roff::roman(" ")).into_iter().chain(l))
            .collect();
        page.control("PP", []).text(joined);
        return;
    }
    page.control("RS", ["4"]).control("nf", []);
    for l in block.lines {
        page.text(l);
    }
    page.control("fi", []).control("RE", []);
}

/// kubejoin-config.toml(5), in roff, from the example's text: its first line names the
/// file, its first paragraph is the description, each `[section]` a section of the page,
/// each paragraph of comments a paragraph and each key, bold, an example line.
pub fn config_page(example: &str, version: &str) -> String {
    use roff::{Roff, bold, roman};
    let mut page = Roff::new();
    let footer = format!("kubejoin {version}");
    // No date (reproducible builds): an empty argument, quoted, as roff wants it.
    page.control("TH", ["KUBEJOIN-CONFIG.TOML", "5", "\"\"", footer.as_str()])
        .control("SH", ["NAME"])
        .text([roman(
            "kubejoin-config.toml - kubejoin's configuration, /etc/kubejoin/config.toml",
        )])
        .control("SH", ["SYNOPSIS"])
        .text([bold("/etc/kubejoin/config.toml")])
        .control("br", [])
        .text([bold("/etc/kubejoin/config.d/*.toml")])
        .control("SH", ["DESCRIPTION"]);
    // The block being gathered: a paragraph, preformatted lines or keys, each ended by a
    // line of another kind, a blank line or a section.
    let mut open: Option<Block> = None;
    // The file's own first line is the page's name.
    for line in example.lines().skip(1) {
        let (kind, item) = match classify(line) {
            Line::Section(name) => {
                close(&mut page, open.take());
                let title = format!("[{name}]");
                page.control("SH", [title.as_str()]);
                continue;
            }
            Line::Blank => {
                close(&mut page, open.take());
                continue;
            }
            Line::Key { key, value, note } => {
                let mut l = vec![bold(key), roman(format!(" = {value}"))];
                if let Some(note) = note {
                    l.push(roman(format!("    ({note})")));
                }
                (Kind::Keys, l)
            }
            Line::Pre(text) => (Kind::Pre, vec![roman(text)]),
            Line::Prose(text) => (Kind::Prose, vec![roman(text)]),
        };
        match &mut open {
            Some(block) if block.kind == kind => block.lines.push(item),
            _ => {
                close(&mut page, open.take());
                open = Some(Block {
                    kind,
                    lines: vec![item],
                });
            }
        }
    }
    close(&mut page, open.take());
    page.control("SH", ["FILES"])
        .text([bold("/etc/kubejoin/config.toml.example")])
        .control("RS", ["4"])
        .text([roman("this page's text, as a file to copy")])
        .control("RE", [])
        .control("SH", ["SEE ALSO"])
        .text([
            bold("kubejoin"),
            roman("(8), "),
            bold("kubejoin-run"),
            roman("(8)"),
        ]);
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_example() {
        assert_eq!(classify("[cluster]"), Line::Section("cluster"));
        assert_eq!(
            classify("# [kubelet.config]"),
            Line::Section("kubelet.config")
        );
        assert_eq!(
            classify("# maxPods = 110"),
            Line::Key {
                key: "maxPods",
                value: "110",
                note: None
            }
        );
        assert_eq!(
            classify(r#"# cgroup_driver = "systemd"              # also set in containerd's runc"#),
            Line::Key {
                key: "cgroup_driver",
                value: r#""systemd""#,
                note: Some("also set in containerd's runc")
            }
        );
        assert_eq!(
            classify(r#"server = "https://203.0.113.10:6443""#),
            Line::Key {
                key: "server",
                value: r#""https://203.0.113.10:6443""#,
                note: None
            }
        );
        assert_eq!(
            classify("# missing) and net.ipv4.ip_forward = 1 with bridge netfilter on"),
            Line::Prose("missing) and net.ipv4.ip_forward = 1 with bridge netfilter on")
        );
        assert_eq!(
            classify("#   \"docker\": without its bridge"),
            Line::Pre("  \"docker\": without its bridge")
        );
        assert_eq!(classify("#"), Line::Blank);
    }

    /// Every key and section of the example is on the page, bold, in its order.
    #[test]
    fn the_page_holds_every_key() {
        let page = config_page(EXAMPLE, "0.1.0");
        assert!(
            page.contains(".TH KUBEJOIN-CONFIG.TOML 5 \"\" \"kubejoin 0.1.0\"\n"),
            "{page}"
        );
        let mut at = 0;
        for line in EXAMPLE.lines() {
            let wanted = match classify(line) {
                Line::Section(name) => format!(".SH [{name}]"),
                Line::Key { key, .. } => format!("\\fB{key}\\fR"),
                _ => continue,
            };
            let Some(found) = page[at..].find(&wanted) else {
                panic!("{wanted} is not on the page after byte {at}:\n{page}");
            };
            at += found;
        }
        for key in [
            "reservations",
            "node_ip_cidrs",
            "maxPods",
            "container_runtime",
        ] {
            assert!(page.contains(&format!("\\fB{key}\\fR")), "{key}");
        }
    }
}
