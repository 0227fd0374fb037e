//! The bootstrap token, from a file or a flag. What parses never shows its secret in
//! `Debug` or `Display`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for parsed in [
        text.parse::<kubejoin::token::BootstrapToken>(),
        kubejoin::token::parse_file_contents(text),
    ] {
        if let Ok(token) = parsed {
            let secret = token.secret().to_string();
            assert!(
                !format!("{token:?}").contains(&secret),
                "Debug shows the secret"
            );
        }
    }
});
