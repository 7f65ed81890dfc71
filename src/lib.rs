//! claude-failover keeps a pool of Claude Code agents in tmux sessions
//! working: it dispatches queued tasks, guards every launch with a hook,
//! watches sessions, and moves conversations to another account when one
//! runs out.
//!
//! The daemon is synchronous: one OS thread per component, crossbeam
//! channels between them, one `Mutex<State>` (see `bus::Ctx`).

pub mod account;
pub mod agent_exit;
pub mod args;
pub mod bus;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod conversation;
pub mod daemon;
pub mod dispatcher;
pub mod doctor;
pub mod events;
pub mod exitinfo;
pub mod failover;
pub mod fsutil;
pub mod fswatch;
pub mod guard;
pub mod http;
pub mod isolation;
pub mod janitor;
pub mod launch;
pub mod lifecycle;
pub mod logging;
pub mod notice;
pub mod notify;
pub mod plan;
pub mod probe;
pub mod queue_index;
pub mod quota;
pub mod reload;
pub mod state;
pub mod status;
pub mod stop;
pub mod systemd;
pub mod task;
pub mod taskcmd;
pub mod timefmt;
pub mod tmux;
pub mod tmux_control;
pub mod transcripts;
pub mod watcher;
pub mod webhook;
pub mod worktree;
