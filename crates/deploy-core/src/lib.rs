//! deploy-core: the domain of oc-deploy. Config, the gate, the pipeline state machine, the
//! process runner, the checkpoint store, smoke and health checks, and the platforms. It knows
//! nothing about MCP: `mcp-server` turns its operations into tools and CLI commands.

pub mod audit;
pub mod cloud;
pub mod config;
pub mod confirm;
pub mod detect;
pub mod domain;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod gate;
pub mod git;
pub mod local;
pub mod ops;
pub mod pack;
pub mod pipeline;
pub mod process;
pub mod provider;
pub mod report;
pub mod run;
pub mod secret;
pub mod smoke;
pub mod store;

pub use error::{CoreError, Result};
