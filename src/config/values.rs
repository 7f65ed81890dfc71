//! The config's value types: durations (`Dur`), patterns, paths with `~`.

#[allow(unused_imports)]
use super::*;

// ------------------------------------------------------------ value types

/// A duration written `500ms`, `30s`, `5m`, `2h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || {
            format!("invalid duration `{s}`: write a whole number and a unit, like 500ms, 30s, 5m, 2h or 7d")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        n.checked_mul(ms)
            .map(|ms| Dur(Duration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = ScalarString::deserialize(d)?;
        s.0.parse().map_err(serde::de::Error::custom)
    }
}

/// A regex from the config, compiled once at load.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    pub fn new(s: &str) -> Result<Pattern, regex::Error> {
        Regex::new(s).map(Pattern)
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(|e| {
            // regex errors span several lines; keep the last, which says what.
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            serde::de::Error::custom(format!("invalid regex `{s}`: {last}"))
        })
    }
}

/// Accepts a YAML string or number (`30s`, or an unquoted `5`) as text, so
/// the duration parser gives the error rather than serde's type message.
pub(super) struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(ScalarString(
            match Raw::deserialize(d)
                .map_err(|_| serde::de::Error::custom("expected a duration like 30s"))?
            {
                Raw::S(s) => s,
                Raw::I(i) => i.to_string(),
                Raw::F(f) => f.to_string(),
            },
        ))
    }
}

/// `~` and `~/x` to the home folder; everything else as written.
/// `$XDG_CONFIG_HOME` when it is an absolute path, else `~/.config`.
pub fn config_home() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| expand_tilde("~/.config"))
}

/// `control.listen` as an address: `IP:PORT`, or `NAME:PORT` resolved
/// (`localhost:7433`), an IPv4 address preferred.
pub fn resolve_listen(listen: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("`{listen}` is not host:port (like 127.0.0.1:7433 or localhost:7433)");
    if !listen.contains(':') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = listen.to_socket_addrs().map_err(|_| bad())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(bad)
}

pub fn expand_tilde(p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    if p == "~" {
        if let Some(h) = home() {
            return h;
        }
    } else if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = home() {
            return h.join(rest);
        }
    }
    PathBuf::from(p)
}

pub(super) fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom("path must not be empty"));
    }
    Ok(expand_tilde(&s))
}

pub(super) fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(|s| expand_tilde(&s)))
}

pub(super) fn de_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    Ok(v.iter().map(|s| expand_tilde(s)).collect())
}
