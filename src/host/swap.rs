//! Swap off, now and after reboot: `swapoff(2)` for every active swap, the swap lines of
//! `/etc/fstab` commented out (kept, marked, with a one-time backup), and the `.swap`
//! units systemd made for them masked. Parsing and planning are pure.

use std::path::{Path, PathBuf};

/// The marker put before a swap line kubejoin commented out.
pub const FSTAB_MARKER: &str = "# kubejoin: swap off for kubelet: ";

/// Active swaps from `/proc/swaps` (its octal escapes, e.g. `\040`, undone).
pub fn parse_proc_swaps(text: &str) -> Vec<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device or file of an fstab swap entry, with `UUID=`/`LABEL=`/`PARTUUID=` resolved
/// to the `/dev/disk/by-*` path systemd names its unit after.
fn fstab_source(spec: &str) -> PathBuf {
    for (prefix, dir) in [
        ("UUID=", "by-uuid"),
        ("LABEL=", "by-label"),
        ("PARTUUID=", "by-partuuid"),
        ("PARTLABEL=", "by-partlabel"),
    ] {
        if let Some(v) = spec.strip_prefix(prefix) {
            return Path::new("/dev/disk").join(dir).join(v);
        }
    }
    PathBuf::from(unescape_octal(spec))
}

/// Active (not commented) swap entries of an fstab.
pub fn fstab_swaps(fstab: &str) -> Vec<PathBuf> {
    fstab
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields[..] {
                [spec, _, "swap", ..] if !spec.starts_with('#') => Some(fstab_source(spec)),
                _ => None,
            }
        })
        .collect()
}

/// The `.swap` units of an fstab's swaps: its active entries and those kubejoin commented
/// out behind [`FSTAB_MARKER`], whose units stay masked (so that a run stopped between
/// the fstab edit and the mask still masks them when run again).
pub fn fstab_units(fstab: &str) -> Vec<String> {
    let ours = fstab
        .lines()
        .filter_map(|l| l.strip_prefix(FSTAB_MARKER))
        .collect::<Vec<_>>()
        .join("\n");
    fstab_swaps(fstab)
        .iter()
        .chain(&fstab_swaps(&ours))
        .map(|p| swap_unit(p))
        .collect()
}

/// The fstab with every active swap line commented out behind [`FSTAB_MARKER`], or
/// `None` when there is none.
pub fn comment_out_swaps(fstab: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(fstab.len() + 64);
    for line in fstab.split_inclusive('\n') {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if matches!(fields[..], [spec, _, "swap", ..] if !spec.starts_with('#')) {
            out.push_str(FSTAB_MARKER);
            changed = true;
        }
        out.push_str(line);
    }
    changed.then_some(out)
}

/// systemd's unit name for a swap device or file (`systemd-escape --path --suffix=swap`).
pub fn swap_unit(path: &Path) -> String {
    let s = path.to_string_lossy();
    let trimmed = s.trim_matches('/');
    let mut out = String::new();
    if trimmed.is_empty() {
        return "-.swap".into();
    }
    for (i, part) in trimmed.split('/').filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            out.push('-');
        }
        for (j, b) in part.bytes().enumerate() {
            let keep = b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && j > 0);
            if keep {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push_str(".swap");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_swaps() {
        let text = "Filename\tType\tSize\tUsed\tPriority\n/dev/loop0 partition 16380 0 -2\n/swap\\040file file 10 0 -3\n";
        assert_eq!(
            parse_proc_swaps(text),
            [PathBuf::from("/dev/loop0"), PathBuf::from("/swap file")]
        );
        assert!(parse_proc_swaps("Filename\tType\tSize\tUsed\tPriority\n").is_empty());
    }

    const FSTAB: &str = "# /etc/fstab\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n/dev/mapper/vg-swap none swap sw 0 0\nUUID=5678 none swap sw 0 0\n# /old-swap none swap sw 0 0\n/swapfile none swap defaults 0 0";

    #[test]
    fn fstab_entries() {
        assert_eq!(
            fstab_swaps(FSTAB),
            [
                PathBuf::from("/dev/mapper/vg-swap"),
                PathBuf::from("/dev/disk/by-uuid/5678"),
                PathBuf::from("/swapfile"),
            ]
        );
    }

    #[test]
    fn commenting_keeps_every_other_byte() {
        let out = comment_out_swaps(FSTAB).unwrap();
        assert_eq!(
            out,
            "# /etc/fstab\nUUID=1234-abcd / ext4 errors=remount-ro 0 1\n# kubejoin: swap off for kubelet: /dev/mapper/vg-swap none swap sw 0 0\n# kubejoin: swap off for kubelet: UUID=5678 none swap sw 0 0\n# /old-swap none swap sw 0 0\n# kubejoin: swap off for kubelet: /swapfile none swap defaults 0 0"
        );
        assert!(fstab_swaps(&out).is_empty());
        assert_eq!(comment_out_swaps(&out), None, "idempotent");
    }

    #[test]
    fn unit_names_as_systemd_escape() {
        for (path, unit) in [
            ("/dev/loop0", "dev-loop0.swap"),
            ("/swapfile", "swapfile.swap"),
            ("/dev/mapper/vg-swap", "dev-mapper-vg\\x2dswap.swap"),
            ("/dev/disk/by-uuid/5678", "dev-disk-by\\x2duuid-5678.swap"),
            ("/var/.swap", "var-\\x2eswap.swap"),
            ("/swap file", "swap\\x20file.swap"),
        ] {
            assert_eq!(swap_unit(Path::new(path)), unit, "{path}");
        }
    }
}
