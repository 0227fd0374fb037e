//! kubejoin: joins a Linux worker to a Kubernetes cluster with one bootstrap token.
//!
//! The library holds everything; `src/main.rs` is the command line over it. It is a
//! library so that the parsers of untrusted input (cluster-info, JWS, X.509, the token,
//! the pin, the configuration, HTTP dates) can be driven from outside: the fuzz targets
//! in `fuzz/`.

pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_info;
pub mod cmd;
pub mod config;
pub mod diff;
pub mod discovery;
pub mod doctor;
pub mod endpoint;
pub mod failpoint;
pub mod failure;
pub mod footprint;
pub mod fsutil;
pub mod host;
pub mod init;
pub mod join;
pub mod jws;
pub mod kubeconfig;
pub mod kubelet;
pub mod ledger;
pub mod lock;
pub mod logging;
pub mod pin;
pub mod preflight;
pub mod reset;
pub mod sys;
pub mod systemd;
pub mod table;
pub mod token;
pub mod x509;
