//! Test support shared by the integration tests: the testbed harness and a worker node
//! built on it. (The API server double is the `apiserver-double` crate beside this file.)

pub mod node;
pub mod testbed;
