//! A configuration file or drop-in (TOML), and the durations in it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let origin = kubejoin::config::Origin::File("/etc/kubejoin/config.toml".into());
    let _ = kubejoin::config::parse_fragment(text, &origin);
    let _ = kubejoin::config::parse_duration(text);
});
