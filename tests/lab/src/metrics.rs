//! The coordinator's `GET /metrics`, scraped once at the end of the
//! lifecycle and checked against the lab's own phase table: one inspection,
//! two cleanings (provide, undeploy) and one deploy, each no longer in the
//! coordinator's histogram than the lab measured from its API call to the
//! state it waited for.

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::report::Report;

/// What the scrape showed (kept in `report.json`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct MetricsEvidence {
    /// `(phase, count, seconds)` of successful phases, from the histograms.
    pub phases: Vec<(String, f64, f64)>,
    /// Accepted agent heartbeats and lookups.
    pub heartbeats: f64,
    /// Accepted lookups.
    pub lookups: f64,
    /// API requests answered.
    pub api_requests: f64,
    /// Nodes in `available`.
    pub available_nodes: f64,
}

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of the text format (label values without escapes, as the
/// coordinator's labels are).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once("=\"")?;
                            Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                        })
                        .collect();
                    (name, labels)
                }
            };
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

/// The sum of the samples named `name` with all the labels of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Seconds of the lab's phases whose name starts with `prefix`.
fn lab_seconds(reports: &[&Report], prefix: &str) -> f64 {
    reports
        .iter()
        .flat_map(|r| &r.phases)
        .filter(|p| p.name.starts_with(prefix))
        .map(|p| p.seconds)
        .sum()
}

/// Scrapes `url` and checks it against `report`'s phases.
pub async fn check(url: &str, report: &Report, earlier: &[Report]) -> Result<MetricsEvidence> {
    let reports: Vec<&Report> = earlier.iter().chain([report]).collect();
    let servers = reports.len() as f64;
    let text = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("scraping {url}"))?
        .text()
        .await?;
    let s = parse(&text);
    let mut e = MetricsEvidence::default();
    // (histogram phase, count expected, the lab's phases it lies within)
    for (phase, want, lab) in [
        ("inspect", servers, lab_seconds(&reports, "inspect")),
        (
            "clean",
            2.0 * servers,
            lab_seconds(&reports, "provide") + lab_seconds(&reports, "undeploy"),
        ),
        ("deploy", servers, lab_seconds(&reports, "deploy")),
    ] {
        let l = [("phase", phase), ("result", "success")];
        let count = sum(&s, "ingot_phase_duration_seconds_count", &l);
        let seconds = sum(&s, "ingot_phase_duration_seconds_sum", &l);
        ensure!(
            count == want,
            "/metrics counts {count} successful {phase} phase(s), the lab ran {want}"
        );
        // The coordinator's phase starts after the lab's API call and ends
        // before the lab sees the end state (1 s of slack for the clocks).
        ensure!(
            seconds > 0.0 && seconds <= lab + 1.0,
            "/metrics says {phase} took {seconds:.1} s, the lab measured {lab:.1} s"
        );
        e.phases.push((phase.to_owned(), count, seconds));
    }
    let ok = [("result", "accepted")];
    e.heartbeats = sum(&s, "ingot_agent_heartbeats_total", &ok);
    e.lookups = sum(&s, "ingot_agent_lookups_total", &ok);
    e.api_requests = sum(&s, "ingot_api_requests_total", &[]);
    e.available_nodes = sum(&s, "ingot_nodes", &[("provision_state", "available")]);
    ensure!(
        e.heartbeats >= 1.0 && e.lookups >= 1.0,
        "/metrics shows {} heartbeats and {} lookups accepted",
        e.heartbeats,
        e.lookups
    );
    ensure!(
        e.available_nodes == servers,
        "/metrics counts {} available nodes, the lab has {servers}",
        e.available_nodes
    );
    let deploy_steps = sum(
        &s,
        "ingot_agent_command_duration_seconds_count",
        &[("command", "deploy.execute_deploy_step"), ("result", "ok")],
    );
    ensure!(
        deploy_steps >= 1.0,
        "/metrics shows no deploy step sent to the agent"
    );
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_is_read() {
        let s = parse(
            "# TYPE x counter\nx_total{a=\"1\",b=\"two\"} 3\ny 2.5\n\
             ingot_nodes{provision_state=\"available\",power_state=\"power off\"} 1\n# EOF\n",
        );
        assert_eq!(sum(&s, "x_total", &[("b", "two")]), 3.0);
        assert_eq!(sum(&s, "x_total", &[("b", "one")]), 0.0);
        assert_eq!(sum(&s, "y", &[]), 2.5);
        assert_eq!(sum(&s, "ingot_nodes", &[("power_state", "power off")]), 1.0);
    }
}
