//! The agent's integration tests, in one binary: a fake apiserver and a Sentry sink from
//! `tests/harness`, the agent in-process or as its own binary. One crate instead of one per
//! file, so a change to the agent links one test binary, not seven.

mod common;

mod binary;
mod connect;
mod container_logs;
mod crons;
mod delivery;
mod docs;
mod enrichment;
mod events;
mod gke;
mod isolation;
mod pods;
mod resume;
mod storm;
mod structure;
mod watching;
