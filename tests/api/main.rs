//! The one integration-test binary: the real application on a random port,
//! over real HTTP, in front of a real Lbasedb-compatible upstream on the
//! `lbasedb` storage (or a deliberately broken one, for fault tests).

mod admin;
mod auth;
mod browser;
mod budget;
mod cli;
mod django;
mod embedded;
mod explorer;
mod faults;
mod grants;
mod hardening;
mod helpers;
mod idempotency;
mod identity;
pub mod oidc;
mod operations;
mod proxy;
mod replicas;
mod safety;
mod security;
mod two_factor;
