//! pm-bridge: deploy tickets in Linear (GraphQL) or GitHub (REST), guarded by the skill's
//! idempotency markers, with a deferred-action queue for when the tracker is unreachable, and
//! chat notifications (Telegram, Slack, a generic webhook). It knows neither deploy-core nor
//! MCP: mcp-server connects the pipeline's events to it.

pub mod bridge;
pub mod config;
pub mod github;
pub mod linear;
pub mod markers;
pub mod notify;
pub mod tracker;
pub mod trailers;
