//! rocketmq-tpc (work in progress).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod protocol;
