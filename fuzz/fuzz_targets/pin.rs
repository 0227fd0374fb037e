//! A CA pin (`sha256:<hex>`), from the configuration or a flag.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(pin) = text.parse::<kubejoin::pin::CaPin>() {
        // What parses prints back as a pin that parses to the same.
        let again: kubejoin::pin::CaPin = pin.to_string().parse().unwrap();
        assert_eq!(again.to_string(), pin.to_string());
    }
    let _ = kubejoin::pin::parse_all(&text.split(',').collect::<Vec<_>>());
});
