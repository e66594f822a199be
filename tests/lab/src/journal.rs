//! The double-ownership check of the HA lab, on the coordinators' per-node
//! journal (`node_events`, read with `psql`): for each node, actions of
//! different conductors never overlap in time (an unfinished action of a
//! killed member ends at its kill time at the latest), the fencing token
//! never decreases with time, and a new owner acts under a new token.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One row of `node_events`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Event {
    /// The row's id (TEXT in the schema; a number is read as its digits).
    #[serde(deserialize_with = "text_or_number")]
    pub id: String,
    /// The node.
    pub node_uuid: String,
    /// The member that acted.
    pub conductor: String,
    /// The node's fencing token the member held.
    pub fence: i64,
    /// `power`, `agent`, `takeover`, …
    pub kind: String,
    /// What it did.
    #[serde(default)]
    pub detail: Option<String>,
    /// Database clock, ms since the epoch.
    pub started_ms: i64,
    /// Database clock; `None` while (or if never) finished.
    pub finished_ms: Option<i64>,
}

fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// The query whose one line of output [`parse`] reads: the journal of
/// `node` as a JSON array, in time order. The table is also the node's
/// history: the callers' requests (recorded by whichever member answered the
/// API) and the agent's steps (which may outlast the coordinator that
/// started them) are left out, as the coordinator's own `Db::node_events`
/// leaves them out: they are not actions of the node's owner.
pub fn query(node: &str) -> String {
    // A UUID from the API; quoting doubles any quote all the same.
    let node = node.replace('\'', "''");
    format!(
        "SELECT COALESCE(json_agg(e ORDER BY e.started_ms, e.id), '[]'::json) \
         FROM (SELECT id, node_uuid, conductor, fence, kind, detail, started_ms, finished_ms \
         FROM node_events WHERE node_uuid = '{node}' \
         AND kind NOT IN ('request', 'deploy_step', 'clean_step')) e"
    )
}

/// Reads the output of [`query`].
pub fn parse(psql_out: &str) -> Result<Vec<Event>> {
    let text = psql_out.trim();
    serde_json::from_str(if text.is_empty() { "[]" } else { text })
        .with_context(|| format!("node_events as JSON: {text}"))
}

/// How long after its recorded kill time a killed member's action may still
/// start (its last statement may have been in the database's socket buffer
/// when the process died).
pub const KILL_SLACK_MS: i64 = 500;

/// One finding of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `overlap`, `fence decreased`, `acted after kill`.
    pub what: String,
    /// The rows involved (ids) and why.
    pub detail: String,
}

/// What the check saw, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Rows read.
    pub rows: usize,
    /// Rows per conductor.
    pub per_conductor: BTreeMap<String, usize>,
    /// Fence values in time order, deduplicated.
    pub fences: Vec<i64>,
    /// The violations (the run fails if any).
    pub violations: Vec<Violation>,
}

/// The end of an action: its finish, or for a killed member's action the
/// kill time at the latest; an unfinished action of a live member lasts
/// until `now_ms`.
fn end_ms(e: &Event, kills: &BTreeMap<String, i64>, now_ms: i64) -> i64 {
    let end = e.finished_ms.unwrap_or(now_ms);
    match kills.get(&e.conductor) {
        Some(k) => end.min(*k).max(e.started_ms),
        None => end,
    }
}

/// Checks the journal of one node (`events` in any order). `kills`: member
/// → kill time (ms since the epoch, the same clock as the database's: one
/// machine); `now_ms`: when the journal was read.
pub fn check(events: &[Event], kills: &BTreeMap<String, i64>, now_ms: i64) -> Summary {
    let mut ev: Vec<&Event> = events.iter().collect();
    // Stable: rows that started in the same millisecond keep the
    // database's order.
    ev.sort_by_key(|e| e.started_ms);
    let mut s = Summary {
        rows: ev.len(),
        ..Summary::default()
    };
    for e in &ev {
        *s.per_conductor.entry(e.conductor.clone()).or_default() += 1;
        if s.fences.last() != Some(&e.fence) {
            s.fences.push(e.fence);
        }
        if let Some(k) = kills.get(&e.conductor)
            && e.started_ms > k + KILL_SLACK_MS
        {
            s.violations.push(Violation {
                what: "acted after kill".into(),
                detail: format!(
                    "row {} ({} {}) of {} started at {} ms, {} ms after its kill",
                    e.id,
                    e.kind,
                    e.detail.as_deref().unwrap_or(""),
                    e.conductor,
                    e.started_ms,
                    e.started_ms - k
                ),
            });
        }
    }
    // Fences in time order.
    for w in ev.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.fence < a.fence {
            s.violations.push(Violation {
                what: "fence decreased".into(),
                detail: format!(
                    "row {} ({}, fence {}) at {} ms follows row {} ({}, fence {}) at {} ms",
                    b.id,
                    b.conductor,
                    b.fence,
                    b.started_ms,
                    a.id,
                    a.conductor,
                    a.fence,
                    a.started_ms
                ),
            });
        } else if b.conductor != a.conductor && b.fence == a.fence {
            // A takeover grows the token (docs/ha.md): the new owner acting
            // under the old one's token could not be fenced off from it.
            s.violations.push(Violation {
                what: "owner changed without a new fence".into(),
                detail: format!(
                    "row {} ({}) at {} ms follows row {} ({}) at {} ms under the same fence {}",
                    b.id, b.conductor, b.started_ms, a.id, a.conductor, a.started_ms, a.fence
                ),
            });
        }
    }
    // Overlaps between different conductors: half-open [start, end), so an
    // action that starts when the other ends does not overlap it.
    for (i, a) in ev.iter().enumerate() {
        let a_end = end_ms(a, kills, now_ms);
        for b in &ev[i + 1..] {
            if b.started_ms >= a_end {
                // Sorted by start: every later row starts later still.
                break;
            }
            if a.conductor == b.conductor {
                continue;
            }
            let b_end = end_ms(b, kills, now_ms);
            if b.started_ms < a_end && a.started_ms < b_end {
                s.violations.push(Violation {
                    what: "overlap".into(),
                    detail: format!(
                        "{} row {} ({} {}) [{}, {}) overlaps {} row {} ({} {}) [{}, {})",
                        a.conductor,
                        a.id,
                        a.kind,
                        a.detail.as_deref().unwrap_or(""),
                        a.started_ms,
                        a_end,
                        b.conductor,
                        b.id,
                        b.kind,
                        b.detail.as_deref().unwrap_or(""),
                        b.started_ms,
                        b_end
                    ),
                });
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, c: &str, fence: i64, start: i64, end: Option<i64>) -> Event {
        Event {
            id: id.to_string(),
            node_uuid: "n1".into(),
            conductor: c.into(),
            fence,
            kind: "agent".into(),
            detail: None,
            started_ms: start,
            finished_ms: end,
        }
    }

    fn kills(k: &[(&str, i64)]) -> BTreeMap<String, i64> {
        k.iter().map(|(c, t)| ((*c).to_owned(), *t)).collect()
    }

    #[test]
    fn a_clean_takeover_passes() {
        // c1 writes the image, is killed at 1500 with its action unfinished;
        // c2 takes over at 7000 with a higher fence.
        let j = [
            ev(1, "c1", 1, 0, Some(100)),
            ev(2, "c1", 1, 1000, None),
            ev(3, "c2", 2, 7000, Some(7000)),
            ev(4, "c2", 2, 7100, Some(9000)),
        ];
        let s = check(&j, &kills(&[("c1", 1500)]), 20_000);
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(s.rows, 4);
        assert_eq!(s.fences, vec![1, 2]);
        assert_eq!(s.per_conductor["c1"], 2);
    }

    #[test]
    fn overlapping_owners_fail() {
        // c1 is alive and its action runs on while c2 acts.
        let j = [ev(1, "c1", 1, 1000, None), ev(2, "c2", 2, 5000, Some(6000))];
        let s = check(&j, &kills(&[]), 20_000);
        assert_eq!(s.violations.len(), 1);
        assert_eq!(s.violations[0].what, "overlap");
        // Finished actions that overlap, out of order in the input.
        let j = [
            ev(2, "c2", 2, 1500, Some(1600)),
            ev(1, "c1", 1, 1000, Some(2000)),
        ];
        let s = check(&j, &kills(&[]), 20_000);
        assert_eq!(s.violations.len(), 1, "{:?}", s.violations);
        // A long action of c1 overlapped by c3 after a short one of c2.
        let j = [
            ev(1, "c1", 1, 0, Some(10_000)),
            ev(2, "c1", 1, 100, Some(200)),
            ev(3, "c3", 2, 5000, Some(5100)),
        ];
        let s = check(&j, &kills(&[]), 20_000);
        assert_eq!(s.violations.len(), 1, "{:?}", s.violations);
    }

    #[test]
    fn the_killed_members_unfinished_action_ends_at_the_kill() {
        let j = [ev(1, "c1", 1, 1000, None), ev(2, "c2", 2, 5000, None)];
        assert!(
            check(&j, &kills(&[("c1", 4000)]), 20_000)
                .violations
                .is_empty()
        );
        // Killed after c2 had started: both acted at once.
        let s = check(&j, &kills(&[("c1", 6000)]), 20_000);
        assert_eq!(s.violations.len(), 1);
        // A finish recorded after the kill still ends at the kill.
        let j = [ev(1, "c1", 1, 1000, Some(9000)), ev(2, "c2", 2, 5000, None)];
        assert!(
            check(&j, &kills(&[("c1", 4000)]), 20_000)
                .violations
                .is_empty()
        );
    }

    #[test]
    fn touching_actions_do_not_overlap_and_same_conductor_never_does() {
        let j = [
            ev(1, "c1", 1, 1000, Some(2000)),
            ev(2, "c1", 1, 1500, Some(1700)),
            ev(3, "c2", 2, 2000, Some(3000)),
        ];
        assert!(check(&j, &kills(&[]), 20_000).violations.is_empty());
    }

    #[test]
    fn a_decreasing_or_unchanged_fence_across_owners_fails() {
        let j = [
            ev(1, "c1", 3, 1000, Some(1100)),
            ev(2, "c2", 2, 2000, Some(2100)),
        ];
        let s = check(&j, &kills(&[]), 20_000);
        assert_eq!(s.violations.len(), 1);
        assert_eq!(s.violations[0].what, "fence decreased");
        let j = [
            ev(1, "c1", 3, 1000, Some(1100)),
            ev(2, "c2", 3, 2000, Some(2100)),
        ];
        let s = check(&j, &kills(&[]), 20_000);
        assert_eq!(s.violations.len(), 1);
        assert_eq!(s.violations[0].what, "owner changed without a new fence");
    }

    #[test]
    fn a_killed_member_acting_later_fails() {
        let j = [ev(1, "c1", 1, 9000, Some(9100))];
        let s = check(&j, &kills(&[("c1", 4000)]), 20_000);
        assert_eq!(s.violations.len(), 1);
        assert_eq!(s.violations[0].what, "acted after kill");
        // Within the slack: a statement already sent.
        let j = [ev(1, "c1", 1, 4000 + KILL_SLACK_MS, Some(4600))];
        assert!(
            check(&j, &kills(&[("c1", 4000)]), 20_000)
                .violations
                .is_empty()
        );
    }

    #[test]
    fn parses_psql_json() {
        let out = r#"[{"id":"0193a1","node_uuid":"n1","conductor":"c1","fence":1,"kind":"power","detail":"power on","started_ms":1733480000000,"finished_ms":null}]
"#;
        let j = parse(out).expect("parses");
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].finished_ms, None);
        assert_eq!(j[0].id, "0193a1");
        assert_eq!(j[0].detail.as_deref(), Some("power on"));
        let j = parse(r#"[{"id":7,"node_uuid":"n1","conductor":"c1","fence":1,"kind":"power","detail":"","started_ms":1,"finished_ms":2}]"#)
            .expect("numeric id");
        assert_eq!(j[0].id, "7");
        assert_eq!(parse("[]\n").expect("empty").len(), 0);
        assert_eq!(parse("").expect("nothing").len(), 0);
        assert!(parse("not json").is_err());
        assert!(query("x'y").contains("'x''y'"));
        // Requests and agent steps are history, not the owner's actions.
        assert!(query("n").contains("kind NOT IN ('request', 'deploy_step', 'clean_step')"));
    }
}
