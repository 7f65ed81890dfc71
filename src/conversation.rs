//! What a conversation's transcript (`<config_dir>/projects/…/<id>.jsonl`,
//! one JSON entry a line, only ever appended) says, where the pane cannot be
//! trusted: whether a message was taken (a ghost input box hides it), whether
//! a turn ended at a usage limit (the line is drawn after StopFailure, or
//! scrolls away in a small pane), and what the agent is asking.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

/// How much of a transcript's end is read: its last entries, not its history.
const TAIL_BYTES: u64 = 256 * 1024;

/// The transcript's length now: an offset to look for later entries from.
pub fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The complete entries written at or after byte `from`, oldest first.
fn entries_from(path: &Path, from: u64) -> Vec<Value> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let end = f.metadata().map_or(0, |m| m.len());
    let start = from.max(end.saturating_sub(TAIL_BYTES)).min(end);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(end - start).read_to_end(&mut buf).is_err()
    {
        return Vec::new();
    }
    // A cut first line (reading from the middle) or an unfinished last one
    // does not parse, and is skipped.
    buf.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// A prompt a person (or the daemon) typed, not a tool result.
fn is_prompt(e: &Value) -> bool {
    e["type"] == "user" && e["message"]["content"].is_string()
}

/// Whether claude took a prompt after byte `from`: it writes the prompt to
/// the transcript when it sends it.
pub fn prompt_since(path: &Path, from: u64) -> bool {
    entries_from(path, from).iter().any(is_prompt)
}

/// The text blocks of an entry's message.
fn texts(e: &Value) -> Vec<&str> {
    match &e["message"]["content"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The last assistant entry, if it is the last entry that is not a prompt
/// typed after it (claude types `/rate-limit-options` at a limit).
fn last_answer(path: &Path) -> Option<Value> {
    entries_from(path, 0)
        .into_iter()
        .rev()
        .find(|e| e["type"] == "assistant" || is_prompt(e) && !is_command(e))
        .filter(|e| e["type"] == "assistant")
}

fn is_command(e: &Value) -> bool {
    e["message"]["content"]
        .as_str()
        .is_some_and(|s| s.starts_with('/') || s.contains("<command-name>"))
}

/// The usage-limit message the last turn ended with (an API error entry
/// that `is_limit` recognises), if it did.
pub fn limit_message(path: &Path, is_limit: impl Fn(&str) -> bool) -> Option<String> {
    let e = last_answer(path)?;
    if e["isApiErrorMessage"] != true {
        return None;
    }
    texts(&e)
        .into_iter()
        .find(|t| is_limit(t))
        .map(str::to_string)
}

/// The question(s) of an `AskUserQuestion` call the last turn is waiting on.
pub fn pending_question(path: &Path) -> Option<String> {
    let e = last_answer(path)?;
    let call = e["message"]["content"]
        .as_array()?
        .iter()
        .rev()
        .find(|b| b["type"] == "tool_use" && b["name"] == "AskUserQuestion")?;
    let asked: Vec<&str> = call["input"]["questions"]
        .as_array()?
        .iter()
        .filter_map(|q| q["question"].as_str())
        .collect();
    (!asked.is_empty()).then(|| asked.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(lines: &[Value]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let mut f = File::create(&p).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        (dir, p)
    }

    fn user(text: &str) -> Value {
        serde_json::json!({"type": "user", "message": {"role": "user", "content": text}})
    }

    fn said(text: &str, api_error: bool) -> Value {
        serde_json::json!({"type": "assistant", "isApiErrorMessage": api_error,
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}})
    }

    #[test]
    fn a_prompt_after_an_offset() {
        let (_d, p) = write(&[user("old")]);
        let from = len(&p);
        assert!(!prompt_since(&p, from));
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(f, "{}", said("thinking", false)).unwrap();
        assert!(!prompt_since(&p, from), "an answer is not a prompt");
        writeln!(f, "{}", user("[t.md] do it")).unwrap();
        assert!(prompt_since(&p, from));
        assert!(!prompt_since(&p.with_extension("none"), 0));
    }

    #[test]
    fn a_limit_only_when_the_last_turn_ended_there() {
        let limit = |t: &str| t.contains("hit your session limit");
        let line = "You've hit your session limit · resets 8:12pm (UTC)";
        let (_d, p) = write(&[user("go"), said(line, true), user("/rate-limit-options")]);
        assert_eq!(limit_message(&p, limit).as_deref(), Some(line));
        // Resumed later and answered: history, not a limit.
        let (_d, p) = write(&[
            user("go"),
            said(line, true),
            user("go on"),
            said("Done.", false),
        ]);
        assert_eq!(limit_message(&p, limit), None);
        // A throttle is an API error but not a limit; a plain answer quoting
        // the words is not an API error.
        let (_d, p) = write(&[said("Server is temporarily limiting requests", true)]);
        assert_eq!(limit_message(&p, limit), None);
        let (_d, p) = write(&[said(line, false)]);
        assert_eq!(limit_message(&p, limit), None);
    }

    #[test]
    fn the_question_waited_on() {
        let ask = serde_json::json!({"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "tool_use", "name": "AskUserQuestion",
             "input": {"questions": [{"question": "Which database?"}, {"question": "Why?"}]}}]}});
        let (_d, p) = write(&[user("go"), ask.clone()]);
        assert_eq!(
            pending_question(&p).as_deref(),
            Some("Which database? / Why?")
        );
        let (_d, p) = write(&[ask, user("decide"), said("Done.", false)]);
        assert_eq!(pending_question(&p), None);
    }
}
