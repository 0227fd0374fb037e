//! Deleting a network link over rtnetlink (`RTM_DELLINK`), as `ip link delete` does,
//! without running `ip`: one request and its acknowledgement on a netlink socket.

use std::ffi::CString;
use std::io;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// Whether a link of this name exists in this network namespace.
pub fn exists(name: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated name.
    unsafe { libc::if_nametoindex(cname.as_ptr()) != 0 }
}

/// Deletes the link `name` (which also takes it down).
pub fn delete(name: &str) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::other("link name with a NUL byte"))?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // nlmsghdr { len, type, flags, seq, pid } + ifinfomsg { family, pad, type, index, flags, change }
    let mut msg = [0u8; NLMSG_HDR + IFINFOMSG];
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&(libc::RTM_DELLINK).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&(index as i32).to_ne_bytes());

    // SAFETY: plain socket calls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut buf = [0u8; 1024];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            ack_result(&buf[..n as usize])
        })();
        libc::close(fd);
        result
    }
}

/// The error code of a netlink acknowledgement (`NLMSG_ERROR`, 0 for success).
fn ack_result(reply: &[u8]) -> io::Result<()> {
    if reply.len() < NLMSG_HDR + 4 {
        return Err(io::Error::other("short netlink reply"));
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != libc::NLMSG_ERROR as u16 {
        return Err(io::Error::other(format!(
            "unexpected netlink reply type {kind}"
        )));
    }
    let code = i32::from_ne_bytes(reply[NLMSG_HDR..NLMSG_HDR + 4].try_into().unwrap());
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u16, code: i32) -> Vec<u8> {
        let mut r = vec![0u8; NLMSG_HDR + 4];
        r[4..6].copy_from_slice(&kind.to_ne_bytes());
        r[NLMSG_HDR..].copy_from_slice(&code.to_ne_bytes());
        r
    }

    #[test]
    fn acknowledgements() {
        assert!(ack_result(&reply(libc::NLMSG_ERROR as u16, 0)).is_ok());
        let e = ack_result(&reply(libc::NLMSG_ERROR as u16, -libc::EPERM)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(ack_result(&reply(3, 0)).is_err());
        assert!(ack_result(&[0u8; 4]).is_err());
    }

    #[test]
    fn a_missing_link_is_an_error() {
        assert!(!exists("kubejoin-none0"));
        assert!(exists("lo"));
        assert!(delete("kubejoin-none0").is_err());
    }
}
