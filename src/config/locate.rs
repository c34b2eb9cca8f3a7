//! Finds the line a field was written on, for error messages. The `config` crate merges
//! sources and forgets positions, so this looks the field up in the file text: a section
//! header (`[input]`, the n-th `[[targets]]`), then the key inside it.

/// Line (1-based) of a dotted field path such as `delivery.commit_interval` or
/// `targets[2].actions`. `None` when it is not written in the file (a default, or an
/// environment override).
pub fn line_of(text: &str, field: &str) -> Option<usize> {
    if field.is_empty() {
        return None;
    }
    if let Some(property) = field.strip_prefix("kafka.") {
        return kafka_line(text, property);
    }
    let segments: Vec<&str> = field.split('.').collect();
    // The section: up to the last indexed segment (`safety.breakers[1].max`: the second
    // `[[safety.breakers]]`), else the first segment (`[delivery]`); the key: the last one.
    let (section, index, key) = match segments.iter().rposition(|s| s.contains('[')) {
        Some(i) => {
            let (name, rest) = segments[i].split_once('[')?;
            let mut path = segments[..i].to_vec();
            path.push(name);
            let index = rest.trim_end_matches(']').parse::<usize>().ok();
            let key = segments.last().filter(|_| i + 1 < segments.len()).copied();
            (path.join("."), index, key)
        }
        None => {
            let key = segments.last().filter(|_| segments.len() > 1).copied();
            (segments[0].to_string(), None, key)
        }
    };
    let section = section.as_str();
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str| {
        let t = l.trim();
        match index {
            Some(_) => t == format!("[[{section}]]"),
            None => t == format!("[{section}]"),
        }
    };
    let start = match index {
        Some(n) => {
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| header(l))
                .nth(n)?
                .0
        }
        None => match lines.iter().position(|l| header(l)) {
            Some(i) => i,
            // A top-level key (`extra_actions = …`) or a whole missing section.
            None => {
                return lines
                    .iter()
                    .position(|l| key_of(l) == Some(section))
                    .map(|i| i + 1)
            }
        },
    };
    let Some(key) = key else {
        return Some(start + 1);
    };
    Some(key_in_section(&lines, start, key))
}

/// A librdkafka property's line: its name has dots of its own (`"bootstrap.servers"`), under
/// `[kafka]`, `[kafka.consumer]` or `[kafka.producer]`.
fn kafka_line(text: &str, property: &str) -> Option<usize> {
    let (header, key) = match property.split_once('.') {
        Some((kind @ ("consumer" | "producer"), key)) => (format!("[kafka.{kind}]"), key),
        _ => ("[kafka]".to_string(), property),
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim() == header)?;
    Some(key_in_section(&lines, start, key))
}

/// The line (1-based) of `key` in the section whose header is at index `start`, or the
/// header's line when the key is not written there.
fn key_in_section(lines: &[&str], start: usize, key: &str) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| key_of(l) == Some(key))
        .map_or(start + 1, |(i, _)| i + 1)
}

fn key_of(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim().trim_matches('"'))
}

/// `… at line 12 column 3` or `… line 12 …` in a parser message.
pub fn line_in_message(message: &str) -> Option<usize> {
    let idx = message.find("line ")?;
    message[idx + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// serde messages name a missing field as "missing field `dir`" and the config crate appends
/// "for key `rules`"; join them into `rules.dir`.
pub fn field_in_message(message: &str) -> Option<String> {
    let quoted = |after: &str| {
        let i = message.find(after)? + after.len();
        let rest = &message[i..];
        let end = rest.find('`')?;
        Some(rest[..end].to_string())
    };
    let key = quoted("for key `");
    let field = quoted("missing field `").or_else(|| quoted("unknown field `"));
    match (key, field) {
        (Some(k), Some(f)) => Some(format!("{k}.{f}")),
        (Some(k), None) => Some(k),
        (None, Some(f)) => Some(f),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "extra_actions = []\n[input]\ntopics = [\"a\"]\n\n[[targets]]\nname = \"x\"\n[[targets]]\nname = \"y\"\nactions = []\n";

    #[test]
    fn finds_keys_in_sections_and_arrays_of_tables() {
        assert_eq!(line_of(TEXT, "input.topics"), Some(3));
        assert_eq!(line_of(TEXT, "targets[1].actions"), Some(9));
        assert_eq!(line_of(TEXT, "targets[0].name"), Some(6));
        assert_eq!(line_of(TEXT, "extra_actions"), Some(1));
        assert_eq!(line_of(TEXT, "delivery.mode"), None);
    }

    #[test]
    fn finds_keys_in_nested_arrays_of_tables() {
        let text = "[[targets]]\nname = \"a\"\ndisclosure = \"p\"\n[disclosure]\nkey_file = \"k\"\n[[disclosure.profiles]]\nname = \"p\"\n[[disclosure.profiles]]\nname = \"q\"\ndisclose = []\n";
        assert_eq!(line_of(text, "disclosure.profiles[1].disclose"), Some(10));
        assert_eq!(line_of(text, "disclosure.profiles[0].name"), Some(7));
        assert_eq!(line_of(text, "disclosure.key_file"), Some(5));
        assert_eq!(line_of(text, "targets[0].disclosure"), Some(3));
    }

    #[test]
    fn finds_librdkafka_properties_by_their_dotted_names() {
        let text = "[kafka]\n\"bootstrap.servers\" = \"x\"\n\"bootstrap.server\" = \"y\"\n[kafka.consumer]\n\"fetch.wait.max.ms\" = \"soon\"\n";
        assert_eq!(line_of(text, "kafka.bootstrap.server"), Some(3));
        assert_eq!(line_of(text, "kafka.consumer.fetch.wait.max.ms"), Some(5));
        assert_eq!(line_of(text, "kafka.sasl.password_file"), Some(1));
    }

    #[test]
    fn reads_fields_out_of_serde_messages() {
        assert_eq!(
            field_in_message("missing field `dir` for key `rules`").as_deref(),
            Some("rules.dir")
        );
        assert_eq!(line_in_message("bad at line 12 column 3"), Some(12));
    }
}
