//! What a server says in headers: `Date`, `Retry-After`; and certificate times.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let now = 1_764_547_200;
    if let Some(t) = kubejoin::clock::parse_http_date(text) {
        let _ = kubejoin::clock::format_utc(t);
        let _ = kubejoin::clock::skew_warning(now, t);
    }
    let _ = kubejoin::discovery::http::retry_after(text, now);
    if let Some(t) = kubejoin::clock::parse_cert_time(text) {
        let _ = kubejoin::clock::format_utc(t);
    }
    let _ = kubejoin::clock::ca_validity_warning(now, text, text);
});
