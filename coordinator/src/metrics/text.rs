//! Reading the text format back: the samples of a scrape, for tests and
//! the lab (a small reader of what [`super::Metrics::encode`] writes, not a
//! full OpenMetrics parser: no exemplars, no timestamps).

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (`ingot_api_requests_total`).
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of `text`; lines that do not parse are left out.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let Some(open) = line.find('{') else {
        let (name, value) = line.split_once(' ')?;
        return Some(Sample {
            name: name.to_owned(),
            labels: Vec::new(),
            value: value.split_whitespace().next()?.parse().ok()?,
        });
    };
    let name = line[..open].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            let value = after.split_whitespace().next()?.parse().ok()?;
            return Some(Sample {
                name,
                labels,
                value,
            });
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut escaped = false;
        let mut close = None;
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    close = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
            escaped = false;
        }
        labels.push((key.to_owned(), value));
        rest = &after[close? + 1..];
    }
}

/// The sum of the samples named `name` whose labels include every pair of
/// `with` (0 when there are none).
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_back() {
        let text = "# TYPE a counter\na_total 3\nb{x=\"1\",y=\"q\\\"z\"} 2.5\nc{} 1\n# EOF\n";
        let s = parse(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].name, "a_total");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].label("x"), Some("1"));
        assert_eq!(s[1].label("y"), Some("q\"z"));
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].labels, vec![]);
        assert_eq!(sum(&s, "b", &[("x", "1")]), 2.5);
        assert_eq!(sum(&s, "b", &[("x", "2")]), 0.0);
    }
}
