//! Deleting a network link over rtnetlink (`RTM_DELLINK`), as `ip link delete` does,
//! without running `ip`: one request and its acknowledgement on a netlink socket.

use std::io;
use std::os::fd::AsRawFd;

use nix::libc;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// Links that are not the node's own: container runtimes' and network plugins' bridges,
/// veths and tunnels, virtual machines' bridges (name prefixes).
pub const NOT_THE_NODES: [&str; 12] = [
    "docker", "cni", "cbr", "veth", "cali", "flannel", "kube-", "virbr", "lxc", "tunl", "vxlan",
    "weave",
];

/// Whether a link is the node's own (not a container or VM network's, not loopback).
pub fn nodes_own(name: &str) -> bool {
    name != "lo" && !NOT_THE_NODES.iter().any(|p| name.starts_with(p))
}

/// Whether a link of this name exists in this network namespace.
pub fn exists(name: &str) -> bool {
    if_nametoindex(name).is_ok()
}

/// The `RTM_DELLINK` request for the link with this index: nlmsghdr { len, type, flags,
/// seq, pid } + ifinfomsg { family, pad, type, index, flags, change }.
fn dellink_request(index: u32) -> [u8; NLMSG_HDR + IFINFOMSG] {
    let mut msg = [0u8; NLMSG_HDR + IFINFOMSG];
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&(libc::RTM_DELLINK).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&(index as i32).to_ne_bytes());
    msg
}

/// Deletes the link `name` (which also takes it down).
pub fn delete(name: &str) -> io::Result<()> {
    let index = if_nametoindex(name)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        fd.as_raw_fd(),
        &dellink_request(index),
        &kernel,
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    ack_result(&buf[..n])
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

    #[test]
    fn the_request_is_rtm_dellink_with_ack() {
        let m = dellink_request(7);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), libc::RTM_DELLINK);
        assert_eq!(
            u16::from_ne_bytes([m[6], m[7]]),
            (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16
        );
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
    }

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
