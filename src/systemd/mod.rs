//! systemd: the D-Bus client, kubelet's unit and configuration, and `sd_notify`.

pub mod dbus;
pub mod notify;
