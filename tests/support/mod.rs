//! Test support shared by the integration tests: the testbed harness and a worker node
//! built on it. (The API server double is the `apiserver-double` crate beside this file.)

pub mod cluster;
pub mod node;
pub mod overlay;
pub mod testbed;

/// stdout then stderr of a finished command, as text.
#[allow(dead_code)] // not every test binary prints commands
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
