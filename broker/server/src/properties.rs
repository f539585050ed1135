//! Java `.properties` text: parsing, rendering and in-place rewriting.
//!
//! RocketMQ brokers are configured with `broker.conf`, a Java properties file, and
//! UPDATE_BROKER_CONFIG / GET_BROKER_CONFIG carry the same format in their bodies. This
//! module reads it the way `java.util.Properties.load` does (comments with `#`/`!`, `=`, `:`
//! or whitespace as separator, backslash line continuation and escapes) and writes it back.
//! [`rewrite`] updates values inside an existing file's text while keeping its comments,
//! order and unrelated keys, so that a runtime config change persisted to `-c broker.conf`
//! leaves the operator's file recognisable.

use std::collections::BTreeMap;

/// One logical entry of a properties text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    /// Physical line range `[first, last]` this entry spans.
    first: usize,
    last: usize,
}

/// Parses properties text into an ordered list of entries (later duplicates win in maps).
fn entries(text: &str) -> Vec<Entry> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i;
        let mut logical = String::new();
        let mut line = lines[i].trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            i += 1;
            continue;
        }
        loop {
            let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 && i + 1 < lines.len() {
                logical.push_str(&line[..line.len() - 1]);
                i += 1;
                line = lines[i].trim_start();
            } else {
                if trailing % 2 == 1 {
                    logical.push_str(&line[..line.len() - 1]);
                } else {
                    logical.push_str(line);
                }
                break;
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push(Entry {
            key,
            value,
            first,
            last: i,
        });
        i += 1;
    }
    out
}

fn split_key_value(logical: &str) -> (String, String) {
    let chars: Vec<char> = logical.chars().collect();
    let mut idx = 0;
    let mut key_end = chars.len();
    while idx < chars.len() {
        let c = chars[idx];
        if c == '\\' {
            idx += 2;
            continue;
        }
        if c == '=' || c == ':' || c.is_whitespace() {
            key_end = idx;
            break;
        }
        idx += 1;
    }
    let key_raw: String = chars[..key_end.min(chars.len())].iter().collect();
    let mut v = key_end;
    while v < chars.len() && chars[v].is_whitespace() {
        v += 1;
    }
    if v < chars.len() && (chars[v] == '=' || chars[v] == ':') {
        v += 1;
    }
    while v < chars.len() && chars[v].is_whitespace() {
        v += 1;
    }
    let value_raw: String = chars[v.min(chars.len())..].iter().collect();
    (
        unescape(&key_raw),
        unescape(&value_raw).trim_end().to_string(),
    )
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = (0..4).filter_map(|_| it.next()).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape(s: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' if is_key => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '#' | '!' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parses properties text into a map (a key given twice keeps its last value).
pub fn parse(text: &str) -> BTreeMap<String, String> {
    entries(text)
        .into_iter()
        .filter(|e| !e.key.is_empty())
        .map(|e| (e.key, e.value))
        .collect()
}

/// Renders a map as `key=value` lines.
pub fn render(map: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in map {
        out.push_str(&escape(k, true));
        out.push('=');
        out.push_str(&escape(v, false));
        out.push('\n');
    }
    out
}

/// Rewrites `text` so that every key in `updates` has its new value: the first line of an
/// existing key is replaced (later duplicates are dropped), new keys are appended; comments,
/// blank lines and other keys are kept as they were.
pub fn rewrite(text: &str, updates: &BTreeMap<String, String>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut replace: BTreeMap<usize, (usize, Option<String>)> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in entries(text) {
        if let Some(v) = updates.get(&e.key) {
            let line = if seen.insert(e.key.clone()) {
                Some(format!("{}={}", escape(&e.key, true), escape(v, false)))
            } else {
                None
            };
            replace.insert(e.first, (e.last, line));
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some((last, line)) = replace.get(&i) {
            if let Some(line) = line {
                out.push_str(line);
                out.push('\n');
            }
            i = last + 1;
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    for (k, v) in updates {
        if !seen.contains(k) {
            out.push_str(&escape(k, true));
            out.push('=');
            out.push_str(&escape(v, false));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_forms() {
        let text = "# comment\n! other\n  brokerName = broker-a\nbrokerId:0\nnamesrvAddr 127.0.0.1:9876;127.0.0.1:9877\n\
                    multi=a\\\n   b\nesc=tab\\there\\u0041\nempty=\ntrailing = x  \n";
        let m = parse(text);
        assert_eq!(m["brokerName"], "broker-a");
        assert_eq!(m["brokerId"], "0");
        assert_eq!(m["namesrvAddr"], "127.0.0.1:9876;127.0.0.1:9877");
        assert_eq!(m["multi"], "ab");
        assert_eq!(m["esc"], "tab\thereA");
        assert_eq!(m["empty"], "");
        assert_eq!(m["trailing"], "x");
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn render_round_trips() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "x=y:z".to_string());
        m.insert("weird key".to_string(), " lead\\ing\nnl".to_string());
        assert_eq!(parse(&render(&m)), m);
    }

    #[test]
    fn rewrite_keeps_comments_and_other_keys() {
        let text =
            "# my broker\nbrokerName=b\nnamesrvAddr=h1:9876\n\n# keep\nfoo=bar\nnamesrvAddr=dup\n";
        let mut up = BTreeMap::new();
        up.insert("namesrvAddr".to_string(), "h2:9876;h3:9876".to_string());
        up.insert("brokerPermission".to_string(), "4".to_string());
        let out = rewrite(text, &up);
        assert!(out.starts_with(
            "# my broker\nbrokerName=b\nnamesrvAddr=h2:9876;h3:9876\n\n# keep\nfoo=bar\n"
        ));
        assert!(out.ends_with("brokerPermission=4\n"));
        let m = parse(&out);
        assert_eq!(m["namesrvAddr"], "h2:9876;h3:9876");
        assert_eq!(m["foo"], "bar");
        assert_eq!(m["brokerPermission"], "4");
    }
}
