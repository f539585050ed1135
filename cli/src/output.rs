//! `-o table|wide|json|yaml`: one way every `get`-style command prints what it fetched.
//!
//! JSON and YAML print the command's *view* structs (see [`crate::view`]) whose field names
//! are a stable contract for scripts (snake_case, documented there); tables are for people and
//! may change. Everything is fetched before anything is printed, so a failure never leaves a
//! half-printed table.

use serde::Serialize;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Columns for people.
    #[default]
    Table,
    /// More columns.
    Wide,
    /// JSON, stable field names.
    Json,
    /// YAML, the same fields as JSON.
    Yaml,
}

/// Printing failed (a view could not be serialised).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// JSON encoding failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML encoding failed.
    #[error("cannot encode YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

impl OutputError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "CLI_OUTPUT_JSON",
            Self::Yaml(_) => "CLI_OUTPUT_YAML",
        }
    }
}

/// Renders `value` as `format`; `table(wide)` renders the table forms.
pub fn render<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(bool) -> String,
) -> Result<String, OutputError> {
    Ok(match format {
        Format::Table => table(false),
        Format::Wide => table(true),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value)?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml::to_string(value)?,
    })
}

/// Prints `value` as `format` on stdout.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(bool) -> String,
) -> Result<(), OutputError> {
    let s = render(format, value, table)?;
    print!("{s}");
    Ok(())
}

/// Lays out rows under a header, each column as wide as its widest cell (the last column is
/// not padded).
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format() {
        #[derive(Serialize)]
        struct V {
            name: String,
            queues: u32,
        }
        let v = V {
            name: "T".into(),
            queues: 8,
        };
        let t = |wide: bool| {
            if wide {
                "wide\n".into()
            } else {
                "narrow\n".into()
            }
        };
        assert_eq!(render(Format::Table, &v, t).unwrap(), "narrow\n");
        assert_eq!(render(Format::Wide, &v, t).unwrap(), "wide\n");
        let j: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &v, t).unwrap()).unwrap();
        assert_eq!(j["queues"], 8);
        let y: serde_json::Value =
            serde_yaml::from_str(&render(Format::Yaml, &v, t).unwrap()).unwrap();
        assert_eq!(y["name"], "T");
    }

    #[test]
    fn columns_align() {
        let s = columns(
            &["NAME", "QUEUES"],
            &[
                vec!["a-long-name".into(), "8".into()],
                vec!["b".into(), "16".into()],
            ],
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "NAME         QUEUES");
        assert_eq!(lines[1], "a-long-name  8");
        assert_eq!(lines[2], "b            16");
    }
}
