//! lbasedb-proxy: an authenticating, streaming HTTP gateway in front of Lbasedb.
//!
//! The library builds the whole application so that `main.rs` and the
//! integration tests boot exactly the same thing (see `startup`).

pub mod accesslog;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod budget;
pub mod cli;
pub mod config;
pub mod connections;
pub mod db;
pub mod error;
pub mod fsperm;
pub mod health;
pub mod lbasedb;
pub mod lock;
pub mod logwriter;
pub mod metrics;
pub mod net;
#[cfg(test)]
mod proptests;
pub mod proxy;
pub mod requestid;
pub mod secret;
pub mod skip;
pub mod startup;
