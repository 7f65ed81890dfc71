//! The one way the daemon builds an HTTP client (usage API, webhooks,
//! Telegram): timeouts, no redirects, HTTP error statuses as responses (so
//! 401/429 bodies and headers can be read), our user agent.

use std::time::Duration;

/// An agent whose requests end within `global`; `step` bounds each phase
/// (connect, send, wait, body) when given. A proxy from the environment
/// (`HTTPS_PROXY`, `NO_PROXY`…) is honoured.
pub fn agent(global: Duration, step: Option<Duration>, idle: usize) -> ureq::Agent {
    config(global, step, idle).build().into()
}

/// The CLI's agent for the daemon's control plane: never through a proxy
/// (the bearer token must not leave the machine), no pooled connections.
pub fn local_agent(global: Duration) -> ureq::Agent {
    config(global, None, 0).proxy(None).build().into()
}

fn config(
    global: Duration,
    step: Option<Duration>,
    idle: usize,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .timeout_connect(step)
        .timeout_send_request(step)
        .timeout_recv_response(step)
        .timeout_recv_body(step)
        .timeout_global(Some(global))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(idle)
        .user_agent(format!("claude-failover/{}", env!("CARGO_PKG_VERSION")))
}

/// FNV-1a: a cheap fingerprint (a screen's change, a token's backoff key)
/// that keeps nothing of the input.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
