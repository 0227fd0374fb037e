//! Test support shared by the integration tests: the testbed harness. (The API server
//! double is the `apiserver-double` crate beside this file.)

pub mod testbed;
