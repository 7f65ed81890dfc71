//! The command line's grammar (INTERFACE.md): which command takes which
//! flags. A flag that does not belong to the command is a usage error
//! (exit 2), so `run --json` or `quota --to x` never pass silently.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::task::Priority;

pub const USAGE: &str = "\
claude-failover: keeps a pool of Claude Code agents working in tmux

Usage:
  claude-failover run          [-c FILE]             the daemon, in the foreground
  claude-failover doctor       [-c FILE] [--json]    check everything a launch needs
  claude-failover scan         [-c FILE] [--dry-run] dispatch what is pending to free sessions once
  claude-failover status       [-c FILE] [--json]    sessions, tasks, accounts, usage
  claude-failover tasks        [-c FILE] [-p PROJECT] [--json]
                                                     pending tasks with their fate, running, failed, done
  claude-failover add          [-c FILE] [-p PROJECT] [--priority P] [--title T] [--model M]
                               [--name NAME] [TEXT|-] write a task into a project's inbox
  claude-failover retry        [-c FILE] [-p PROJECT] NAME
                                                     move failed/NAME back to the inbox
  claude-failover quota        [-c FILE] [--json]    poll every account's usage now
  claude-failover failover     [-c FILE] [--to NAME] ask the running daemon to switch accounts
  claude-failover reload       [-c FILE]             ask the running daemon to re-read its config
  claude-failover check-config [-c FILE]             validate the config
  claude-failover hook install DIR [-c FILE]         deploy the guard into a project
  claude-failover hook check   [--tool T] [CMD|-]    run the guard on a command or a PreToolUse JSON
  claude-failover systemd-unit [-c FILE]             print a systemd unit for the daemon
  claude-failover --help | --version

Config: -c FILE, else $CLAUDE_FAILOVER_CONFIG, else $XDG_CONFIG_HOME/claude-failover/config.yaml
(~/.config/claude-failover/config.yaml), else the embedded default (this directory as the one
project, one session, account ~/.claude).
Logs go to stderr; RUST_LOG sets the level (default info).
";

/// What `add` was given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AddArgs {
    pub project: Option<String>,
    pub priority: Option<Priority>,
    pub title: Option<String>,
    pub model: Option<String>,
    pub name: Option<String>,
    /// The words after the flags; `None` or `-` reads stdin.
    pub text: Option<String>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Run,
    Doctor {
        json: bool,
    },
    Scan {
        dry_run: bool,
    },
    Status {
        json: bool,
    },
    Tasks {
        project: Option<String>,
        json: bool,
    },
    Add(AddArgs),
    Retry {
        project: Option<String>,
        name: String,
    },
    Quota {
        json: bool,
    },
    Failover {
        to: Option<String>,
    },
    Reload,
    CheckConfig,
    HookInstall {
        dir: PathBuf,
    },
    HookCheck {
        tool: String,
        arg: Option<String>,
    },
    SystemdUnit,
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub cmd: Cmd,
    pub config: Option<PathBuf>,
}

/// Flags, as typed, and whether each takes a value.
const FLAGS: &[(&str, bool)] = &[
    ("--config", true),
    ("--json", false),
    ("--dry-run", false),
    ("--to", true),
    ("--tool", true),
    ("--project", true),
    ("--priority", true),
    ("--title", true),
    ("--model", true),
    ("--name", true),
];

/// The flags each command accepts (`--help`/`--version` go everywhere).
fn allowed(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "run" | "check-config" | "systemd-unit" | "reload" | "hook install" => &["--config"],
        "doctor" | "status" | "quota" => &["--config", "--json"],
        "scan" => &["--config", "--dry-run"],
        "failover" => &["--config", "--to"],
        "tasks" => &["--config", "--project", "--json"],
        "retry" => &["--config", "--project"],
        "add" => &[
            "--config",
            "--project",
            "--priority",
            "--title",
            "--model",
            "--name",
        ],
        "hook check" => &["--tool"],
        _ => &[],
    }
}

/// Parses the arguments (without the program name). The error is the one
/// line to print before exiting 2.
pub fn parse(args: Vec<OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut flags: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut help = false;
    let mut version = false;
    let str_of = |v: OsString| {
        v.into_string()
            .map_err(|v| format!("`{}` is not valid UTF-8", v.to_string_lossy()))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let long = match &arg {
            Short('h') | Long("help") => {
                help = true;
                continue;
            }
            Short('V') | Long("version") => {
                version = true;
                continue;
            }
            Short('c') => "--config".to_string(),
            Short('p') => "--project".to_string(),
            Long(l) => format!("--{l}"),
            Value(v) => {
                words.push(str_of(v.clone())?);
                continue;
            }
            Short(c) => return Err(format!("unknown option `-{c}`; try --help")),
        };
        let Some(&(name, takes)) = FLAGS.iter().find(|(f, _)| *f == long) else {
            return Err(format!("unknown option `{long}`; try --help"));
        };
        let value = if takes {
            Some(str_of(
                p.value().map_err(|_| format!("`{name}` needs a value"))?,
            )?)
        } else {
            None
        };
        flags.push((name, value));
    }
    if version {
        return Ok(Args {
            cmd: Cmd::Version,
            config: None,
        });
    }
    let config = flag(&flags, "--config").map(PathBuf::from);
    if help {
        return Ok(Args {
            cmd: Cmd::Help,
            config,
        });
    }
    let (name, rest): (String, &[String]) = match words.as_slice() {
        [] => return Err("no command given; try --help".into()),
        [h, s, rest @ ..] if h == "hook" && (s == "install" || s == "check") => {
            (format!("hook {s}"), rest)
        }
        [first, rest @ ..] => (first.clone(), rest),
    };
    if allowed(&name).is_empty() {
        return Err(format!("unknown command `{}`; try --help", words.join(" ")));
    }
    for (f, _) in &flags {
        if !allowed(&name).contains(f) {
            return Err(format!(
                "`{f}` does not belong to `{name}`; try claude-failover --help"
            ));
        }
    }
    let has = |f: &str| flags.iter().any(|(n, _)| *n == f);
    let get = |f: &str| flag(&flags, f);
    let no_words = |cmd: Cmd| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(format!(
                "`{name}` takes no argument, but got `{}`; try --help",
                rest.join(" ")
            ))
        }
    };
    let cmd = match name.as_str() {
        "run" => no_words(Cmd::Run)?,
        "doctor" => no_words(Cmd::Doctor {
            json: has("--json"),
        })?,
        "scan" => no_words(Cmd::Scan {
            dry_run: has("--dry-run"),
        })?,
        "status" => no_words(Cmd::Status {
            json: has("--json"),
        })?,
        "quota" => no_words(Cmd::Quota {
            json: has("--json"),
        })?,
        "failover" => no_words(Cmd::Failover { to: get("--to") })?,
        "reload" => no_words(Cmd::Reload)?,
        "check-config" => no_words(Cmd::CheckConfig)?,
        "systemd-unit" => no_words(Cmd::SystemdUnit)?,
        "tasks" => no_words(Cmd::Tasks {
            project: get("--project"),
            json: has("--json"),
        })?,
        "retry" => match rest {
            [n] => Cmd::Retry {
                project: get("--project"),
                name: n.clone(),
            },
            [] => return Err("`retry` needs the name of a failed task; try --help".into()),
            _ => return Err("`retry` takes one task name; try --help".into()),
        },
        "add" => Cmd::Add(AddArgs {
            project: get("--project"),
            priority: get("--priority").map(|p| priority(&p)).transpose()?,
            title: get("--title"),
            model: get("--model"),
            name: get("--name"),
            text: (!rest.is_empty()).then(|| rest.join(" ")),
        }),
        "hook install" => match rest {
            [dir] => Cmd::HookInstall {
                dir: PathBuf::from(dir),
            },
            _ => return Err("`hook install` needs one directory; try --help".into()),
        },
        "hook check" => Cmd::HookCheck {
            tool: get("--tool").unwrap_or_else(|| "Bash".into()),
            arg: (!rest.is_empty()).then(|| rest.join(" ")),
        },
        _ => unreachable!("allowed() knows every command"),
    };
    Ok(Args { cmd, config })
}

/// The last value given for `f`.
fn flag(flags: &[(&str, Option<String>)], f: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| *n == f)
        .and_then(|(_, v)| v.clone())
}

fn priority(s: &str) -> Result<Priority, String> {
    serde_yaml::from_str::<Priority>(s.trim())
        .map_err(|_| format!("--priority `{s}` must be critical, high, default or low"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, String> {
        parse(s.split_whitespace().map(OsString::from).collect()).map(|a| a.cmd)
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p("run").unwrap(), Cmd::Run);
        assert_eq!(p("scan --dry-run").unwrap(), Cmd::Scan { dry_run: true });
        assert_eq!(
            p("failover --to backup").unwrap(),
            Cmd::Failover {
                to: Some("backup".into())
            }
        );
        assert_eq!(
            p("hook check --tool Write /etc/x").unwrap(),
            Cmd::HookCheck {
                tool: "Write".into(),
                arg: Some("/etc/x".into())
            }
        );
        assert_eq!(
            p("hook check -").unwrap(),
            Cmd::HookCheck {
                tool: "Bash".into(),
                arg: Some("-".into())
            }
        );
        assert_eq!(p("doctor --json").unwrap(), Cmd::Doctor { json: true });
        assert_eq!(
            p("tasks -p api --json").unwrap(),
            Cmd::Tasks {
                project: Some("api".into()),
                json: true
            }
        );
        assert_eq!(
            p("retry -p api fix.md").unwrap(),
            Cmd::Retry {
                project: Some("api".into()),
                name: "fix.md".into()
            }
        );
        assert_eq!(
            p("add -p api --priority high --title T fix the login").unwrap(),
            Cmd::Add(AddArgs {
                project: Some("api".into()),
                priority: Some(Priority::High),
                title: Some("T".into()),
                text: Some("fix the login".into()),
                ..AddArgs::default()
            })
        );
        assert_eq!(p("reload").unwrap(), Cmd::Reload);
        let a = parse(vec!["-c".into(), "x.yaml".into(), "status".into()]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("x.yaml")));
    }

    #[test]
    fn flags_of_other_commands_are_usage_errors() {
        assert_eq!(
            p("run --json").unwrap_err(),
            "`--json` does not belong to `run`; try claude-failover --help"
        );
        assert_eq!(
            p("quota --to x").unwrap_err(),
            "`--to` does not belong to `quota`; try claude-failover --help"
        );
        assert!(p("status --dry-run").is_err());
        assert!(p("hook check -c x.yaml ls").is_err());
        assert_eq!(
            p("run --bogus").unwrap_err(),
            "unknown option `--bogus`; try --help"
        );
        assert!(p("run extra").unwrap_err().contains("takes no argument"));
        assert!(p("frobnicate").unwrap_err().starts_with("unknown command"));
        assert!(p("").is_err());
        assert!(p("retry").is_err());
        assert_eq!(
            p("add --priority urgent x").unwrap_err(),
            "--priority `urgent` must be critical, high, default or low"
        );
        assert_eq!(p("failover --to").unwrap_err(), "`--to` needs a value");
    }

    #[test]
    fn help_and_version_go_anywhere() {
        assert_eq!(p("--version").unwrap(), Cmd::Version);
        assert_eq!(p("run --help").unwrap(), Cmd::Help);
        assert_eq!(p("-h").unwrap(), Cmd::Help);
    }
}
