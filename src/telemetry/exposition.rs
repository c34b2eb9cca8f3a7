//! The two exposition formats: OpenMetrics (what `prometheus-client` writes) when the scraper
//! asks for it, the classic Prometheus text format (0.0.4) otherwise — what `promtool check
//! metrics`, older Prometheus servers and most agents read.

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text as the classic format: counters' HELP/TYPE name their `_total` samples,
/// `info` becomes a gauge named `<name>_info`, `unknown` is `untyped`, and `# UNIT`/`# EOF`
/// lines go.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (new_name, new_kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            rename_help(&mut out, name, &new_name);
            out.push_str(&format!("# TYPE {new_name} {new_kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The HELP line just written for `name` names `new_name` instead (HELP precedes TYPE).
fn rename_help(out: &mut String, name: &str, new_name: &str) {
    let help = format!("# HELP {name} ");
    if let Some(at) = out.rfind(&help) {
        if out[at..].lines().count() == 1 {
            let text = out[at + help.len()..].to_string();
            out.truncate(at);
            out.push_str(&format!("# HELP {new_name} {text}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP containd_commands Commands produced.\n# TYPE containd_commands counter\ncontaind_commands_total{target=\"aws\"} 3\n# HELP containd_build containd build information.\n# TYPE containd_build info\ncontaind_build_info{version=\"0.1.0\"} 1\n# HELP containd_lag Lag.\n# TYPE containd_lag gauge\n# UNIT containd_lag records\ncontaind_lag 4\n# EOF\n";

    #[test]
    fn openmetrics_becomes_the_classic_format() {
        let text = classic(OM);
        assert_eq!(
            text,
            "# HELP containd_commands_total Commands produced.\n# TYPE containd_commands_total counter\ncontaind_commands_total{target=\"aws\"} 3\n# HELP containd_build_info containd build information.\n# TYPE containd_build_info gauge\ncontaind_build_info{version=\"0.1.0\"} 1\n# HELP containd_lag Lag.\n# TYPE containd_lag gauge\ncontaind_lag 4\n"
        );
    }

    #[test]
    fn negotiates_on_accept() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
