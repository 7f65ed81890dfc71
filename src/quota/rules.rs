//! The account rules the switcher decides with (pure): thresholds, eligibility, headroom, the target, the earliest recovery.

#[allow(unused_imports)]
use super::*;

/// A window whose reset time has passed counts as reset (0%) until the
/// next reading says otherwise.
pub fn effective(st: &AccountStatus, now: u64) -> (Option<f64>, Option<f64>) {
    let eff = |u: Option<f64>, r: Option<u64>| match (u, r) {
        (Some(_), Some(r)) if r <= now => Some(0.0),
        _ => u,
    };
    (
        eff(st.five_hour, st.five_hour_resets),
        eff(st.seven_day, st.seven_day_resets),
    )
}

/// Which window is at or over its threshold, if any.
pub fn over_which(cfg: &Config, st: &AccountStatus, now: u64) -> Option<String> {
    let (five, seven) = effective(st, now);
    if let Some(f) = five.filter(|f| *f >= cfg.quota.five_hour_threshold) {
        return Some(format!(
            "5-hour usage {f:.0}% ≥ {:.0}%",
            cfg.quota.five_hour_threshold
        ));
    }
    if let Some(s) = seven.filter(|s| *s >= cfg.quota.seven_day_threshold) {
        return Some(format!(
            "7-day usage {s:.0}% ≥ {:.0}%",
            cfg.quota.seven_day_threshold
        ));
    }
    None
}

pub fn over_threshold(cfg: &Config, st: &AccountStatus, now: u64) -> bool {
    over_which(cfg, st, now).is_some()
}

/// Whether new work can go to this account: token usable, no pane limit
/// held against it, under both thresholds.
pub fn eligible(cfg: &Config, st: &AccountStatus, now: u64) -> bool {
    st.usable && st.limited_until.is_none_or(|t| t <= now) && !over_threshold(cfg, st, now)
}

/// Room left before the nearer threshold, in percentage points; `None`
/// without a reading.
pub fn headroom(cfg: &Config, st: &AccountStatus, now: u64) -> Option<f64> {
    st.read_at?;
    let (five, seven) = effective(st, now);
    Some(
        (cfg.quota.five_hour_threshold - five.unwrap_or(0.0))
            .min(cfg.quota.seven_day_threshold - seven.unwrap_or(0.0)),
    )
}

/// The account to move to: eligible, the most headroom first, config order
/// breaking ties. Accounts never read yet (no credentials file, or not
/// polled yet) count as usable with unknown headroom and come after every
/// account with a reading.
pub fn choose_target(
    cfg: &Config,
    accounts: &BTreeMap<String, AccountStatus>,
    exclude: Option<&str>,
    now: u64,
) -> Option<String> {
    let fresh = AccountStatus {
        usable: true,
        ..AccountStatus::default()
    };
    let mut candidates: Vec<(usize, &str, Option<f64>)> = cfg
        .accounts
        .iter()
        .enumerate()
        .filter(|(_, a)| Some(a.name.as_str()) != exclude)
        .filter_map(|(i, a)| {
            let st = accounts.get(&a.name).unwrap_or(&fresh);
            eligible(cfg, st, now).then(|| (i, a.name.as_str(), headroom(cfg, st, now)))
        })
        .collect();
    candidates.sort_by(|a, b| match (a.2, b.2) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    candidates.first().map(|c| c.1.to_string())
}

/// When the first account should be eligible again by the clock alone:
/// for each account with a usable token, the latest reset among the windows
/// over their threshold (and the end of a held pane limit); the earliest of
/// those. `None` when no time is known.
pub fn earliest_recovery(
    cfg: &Config,
    accounts: &BTreeMap<String, AccountStatus>,
    now: u64,
) -> Option<u64> {
    cfg.accounts
        .iter()
        .filter_map(|a| {
            let st = accounts.get(&a.name)?;
            if !st.usable {
                return None;
            }
            let (five, seven) = effective(st, now);
            let mut at = now;
            if five.is_some_and(|f| f >= cfg.quota.five_hour_threshold) {
                at = at.max(st.five_hour_resets?);
            }
            if seven.is_some_and(|s| s >= cfg.quota.seven_day_threshold) {
                at = at.max(st.seven_day_resets?);
            }
            if let Some(l) = st.limited_until.filter(|l| *l > now) {
                at = at.max(l);
            }
            Some(at)
        })
        .min()
}
