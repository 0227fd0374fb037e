//! `sd_notify(3)`: tell systemd how the join is going (`STATUS=`) and that it is done
//! (`READY=1`). A datagram to `$NOTIFY_SOCKET`; nothing when not run by systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The notify socket systemd gave us, if any.
#[derive(Debug)]
pub struct Notifier {
    addr: Option<SocketAddr>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let addr = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            match bytes.strip_prefix(b"@") {
                // An abstract socket: "@name".
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name).ok()
                }
                None => SocketAddr::from_pathname(path).ok(),
            }
        });
        Notifier { addr }
    }

    /// Sends `state` (newline-separated `KEY=value` pairs). Failures are logged, never
    /// fatal: a join does not fail because systemd could not be told about it.
    pub fn notify(&self, state: &str) {
        let Some(addr) = &self.addr else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }

    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }

    pub fn ready(&self, text: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", text.replace('\n', " ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("kubejoin-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            addr: Some(SocketAddr::from_pathname(&path).unwrap()),
        };
        n.status("phase 1\nof 2");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=phase 1 of 2");
        n.ready("joined");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=joined");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        Notifier { addr: None }.status("x");
    }
}
