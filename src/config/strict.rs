//! Config mistakes serde cannot see, and serde's words made plain: a
//! threshold written as a fraction, a misspelt model, the full key of a
//! nested value and its own line, "a whole number" rather than `u32`.

/// Model aliases Claude Code itself knows (`claude --model ALIAS`).
pub const MODEL_ALIASES: &[&str] = &[
    "default",
    "sonnet",
    "opus",
    "haiku",
    "opusplan",
    "sonnet[1m]",
    "opus[1m]",
];

/// A usage threshold is a percent; `0.9` (a fraction) would fail over at
/// 0.9 %, almost at once.
pub fn threshold(v: f64) -> Result<(), String> {
    if v > 0.0 && v <= 1.0 {
        let pct = v * 100.0;
        return Err(format!(
            "{v} is a percent, not a fraction: did you mean {}?",
            if pct.fract() == 0.0 {
                format!("{pct:.0}")
            } else {
                format!("{pct}")
            }
        ));
    }
    if !(1.0..=100.0).contains(&v) {
        return Err(format!("{v} must be a percent from 1 to 100"));
    }
    Ok(())
}

/// A model is an alias claude knows or a full `claude-…` id (also inside
/// a cloud provider's id, like `us.anthropic.claude-…`).
pub fn model(name: &str) -> Result<(), String> {
    let n = name.trim();
    if MODEL_ALIASES.contains(&n) || n.starts_with("claude-") || n.contains(".claude-") {
        return Ok(());
    }
    let near = MODEL_ALIASES
        .iter()
        .map(|a| (distance(&n.to_ascii_lowercase(), a), *a))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, a)| format!(": did you mean {a}?"))
        .unwrap_or_else(|| {
            format!(
                ": write an alias ({}) or a full id like claude-sonnet-4-5",
                MODEL_ALIASES.join(", ")
            )
        });
    Err(format!("`{name}` is not a model claude knows{near}"))
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// serde's message, with its type names said in words.
pub fn words(msg: &str) -> String {
    let mut m = msg.to_string();
    for (rust, plain) in [
        ("expected u8", "expected a whole number of 0 or more"),
        ("expected u16", "expected a whole number of 0 or more"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected bool", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected keys and values"),
        ("invalid type: sequence", "a list"),
        ("invalid type: map", "keys and values"),
        ("invalid type: unit value", "nothing"),
        ("invalid type: string", "the text"),
        ("invalid type: integer", "the number"),
        ("invalid type: floating point", "the number"),
        ("invalid type: boolean", "the value"),
        ("invalid value: integer", "the number"),
    ] {
        m = m.replace(rust, plain);
    }
    // `expected struct TmuxConfig` names a Rust type: say what it is.
    if let Some(i) = m.find("expected struct ") {
        m.truncate(i);
        m.push_str("expected keys and values");
    }
    if let Some(i) = m.find("expected enum ") {
        m.truncate(i);
        m.push_str("expected one of the documented words");
    }
    m
}

/// serde_yaml names a value's parent when the value's own deserializer
/// fails (`watcher: invalid duration`); the line it points at holds the
/// key. Returns the message with the full key (`watcher.interval: …`).
pub fn full_key(msg: &str, line: Option<&str>) -> String {
    let Some((path, rest)) = msg.split_once(": ") else {
        return msg.to_string();
    };
    let is_path = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b));
    if !is_path {
        return msg.to_string();
    }
    let key = line
        .map(|l| l.trim_start().trim_start_matches("- ").trim_start())
        .and_then(|l| l.split_once(':'))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    match key {
        Some(k) if path.rsplit(['.', ']']).next() != Some(k) => format!("{path}.{k}: {rest}"),
        _ => msg.to_string(),
    }
}

/// The 1-based line of a key path like `accounts[1].config_dir` or
/// `pool.autonomous.max` in block-style YAML. A key not written (a
/// default) is found as its nearest written parent.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let indent = |l: &str| l.len() - l.trim_start().len();
    // The node's lines: from `start` up to the next line indented no more
    // than `own` (the whole file at the top).
    let scope_end = |start: usize, own: Option<usize>| {
        (start + 1..lines.len())
            .find(|&k| !blank(lines[k]) && own.is_some_and(|o| indent(lines[k]) <= o))
            .unwrap_or(lines.len())
    };
    let (mut start, mut end, mut first_line_too) = (0, lines.len(), true);
    let mut found = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let pat = format!("{key}:");
        let from = if first_line_too { start } else { start + 1 };
        let hit = (from..end).find(|&k| {
            let t = lines[k].trim_start().trim_start_matches("- ").trim_start();
            t.starts_with(&pat)
                || t.starts_with(&format!("{{ {pat}"))
                || t.contains(&format!(", {pat}"))
                || t.contains(&format!("{{ {pat}"))
        });
        let Some(i) = hit else {
            return found;
        };
        found = Some(i + 1);
        let own = indent(lines[i]);
        (start, end, first_line_too) = (i, scope_end(i, Some(own)), false);
        if let Some(n) = index {
            let mut items = Vec::new();
            for k in i + 1..lines.len() {
                let l = lines[k];
                if blank(l) {
                    continue;
                }
                let dash = l.trim_start().starts_with("- ") || l.trim() == "-";
                if indent(l) < own || (indent(l) == own && !dash) {
                    break;
                }
                if dash
                    && items
                        .first()
                        .is_none_or(|&f: &usize| indent(lines[f]) == indent(l))
                {
                    items.push(k);
                }
            }
            let Some(&k) = items.get(n) else {
                return found;
            };
            found = Some(k + 1);
            (start, end, first_line_too) = (k, scope_end(k, Some(indent(lines[k]))), true);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_percents() {
        assert_eq!(
            threshold(0.9).unwrap_err(),
            "0.9 is a percent, not a fraction: did you mean 90?"
        );
        assert!(threshold(1.0).unwrap_err().contains("did you mean 100?"));
        assert!(threshold(0.0).unwrap_err().contains("from 1 to 100"));
        assert!(threshold(120.0).is_err());
        assert!(threshold(90.0).is_ok());
    }

    #[test]
    fn models_are_aliases_or_ids() {
        for ok in [
            "sonnet",
            "opus",
            "haiku",
            "claude-sonnet-4-5",
            "us.anthropic.claude-opus-4-1",
            "sonnet[1m]",
        ] {
            assert!(model(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            model("sonet").unwrap_err(),
            "`sonet` is not a model claude knows: did you mean sonnet?"
        );
        assert!(model("gpt-4")
            .unwrap_err()
            .contains("a full id like claude-"));
    }

    #[test]
    fn serde_words_become_plain() {
        assert_eq!(
            words("pool.autonomous.max: invalid type: string \"lots\", expected u32"),
            "pool.autonomous.max: the text \"lots\", expected a whole number of 0 or more"
        );
        assert_eq!(
            words("tmux: invalid type: sequence, expected struct TmuxConfig"),
            "tmux: a list, expected keys and values"
        );
        assert_eq!(
            words("projects: invalid type: string \"/a\", expected a sequence"),
            "projects: the text \"/a\", expected a list"
        );
    }

    #[test]
    fn the_full_key_is_named() {
        assert_eq!(
            full_key(
                "watcher: invalid duration `5 minutes`",
                Some("  interval: 5 minutes")
            ),
            "watcher.interval: invalid duration `5 minutes`"
        );
        assert_eq!(
            full_key("pool.autonomous.max: bad", Some("    max: lots")),
            "pool.autonomous.max: bad"
        );
        assert_eq!(
            full_key(
                "accounts[1]: unknown field `confg_dir`",
                Some("    confg_dir: /b")
            ),
            "accounts[1].confg_dir: unknown field `confg_dir`"
        );
        assert_eq!(full_key("invalid duration", None), "invalid duration");
    }

    #[test]
    fn nested_keys_have_their_own_line() {
        let y = "state_dir: /s\naccounts:\n  - name: a\n    config_dir: /a\n  - name: b\n    config_dir: /b\npool:\n  autonomous:\n    prefix: x\n    max: 3\nquota:\n  five_hour_threshold: 0.9\n";
        assert_eq!(line_of(y, "accounts"), Some(2));
        assert_eq!(line_of(y, "accounts[1]"), Some(5));
        assert_eq!(line_of(y, "accounts[1].config_dir"), Some(6));
        assert_eq!(line_of(y, "accounts[0].name"), Some(3));
        assert_eq!(line_of(y, "pool.autonomous.max"), Some(10));
        assert_eq!(line_of(y, "quota.five_hour_threshold"), Some(12));
        assert_eq!(
            line_of(y, "quota.seven_day_threshold"),
            Some(11),
            "unwritten: its parent"
        );
        assert_eq!(line_of(y, "control.listen"), None);
        let flow = "agent:\n  models: { critical: opus, high: sonet }\n";
        assert_eq!(line_of(flow, "agent.models.high"), Some(2));
    }
}
