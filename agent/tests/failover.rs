//! The agent given two coordinator URLs (`--api-url A,B`, as
//! `ipa-api-url=A,B` from an HA group's boot script), against two small
//! Ironic-style coordinators on 127.0.0.1 that share one node, token and
//! record of requests (as members share the database): when the one in use
//! dies, heartbeats reach the other within seconds; a member that answers
//! 503 (its database unreachable) hands lookup and heartbeat over to the
//! next URL, round-robin. Unprivileged: the inventory comes from a fixture
//! tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::{Coordinator, start_agent};

const MAC: &str = "52:54:00:12:34:56";

#[test]
fn heartbeats_move_to_the_second_coordinator_when_the_first_dies() {
    let first = Coordinator::start(MAC, "1.115");
    let second = Coordinator::start_sharing(&first);
    let (p1, p2) = (first.addr.port(), second.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        &format!("{},{}", first.url(), second.url()),
        dir.path(),
        &[],
    );

    // The first URL answers, so the agent looks up and heartbeats there.
    let hb = first.wait_heartbeat_at(p1, 0, Duration::from_secs(30));
    let token = hb.body["agent_token"].as_str().unwrap().to_string();
    first.wait_heartbeat_at(p1, first.count(), Duration::from_secs(10));

    // Kill it mid-run: its port refuses connections from now on.
    let after = first.count();
    drop(first);
    let killed = Instant::now();

    // The next heartbeat fails and goes to the second URL at once, not a
    // heartbeat interval (here 0.6–1.2 s) or an error delay (5–10 s) later.
    let hb2 = second.wait_heartbeat_at(p2, after, Duration::from_secs(15));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "heartbeats reached the second coordinator only after {took:?}"
    );
    assert_eq!(hb2.body["agent_token"].as_str(), Some(token.as_str()));
    assert_eq!(hb2.body["callback_url"], hb.body["callback_url"]);
    // It stays there.
    let n = second.count();
    second.wait_heartbeat_at(p2, n, Duration::from_secs(10));
    // No lookup was needed: the token and the node carried over.
    let lookups_after_kill = second.state.lock().unwrap().seen[after..]
        .iter()
        .filter(|s| s.path.starts_with("/v1/lookup"))
        .count();
    assert_eq!(lookups_after_kill, 0);

    let log = agent.log_text();
    assert!(
        log.contains("switched to the next URL") && log.contains(&second.url()),
        "{log}"
    );
    eprintln!("heartbeat at the second coordinator {took:?} after the first was killed");
}

#[test]
fn a_503_hands_lookup_and_heartbeat_to_the_next_url_round_robin() {
    let first = Coordinator::start(MAC, "1.115");
    let second = Coordinator::start_sharing(&first);
    let (p1, p2) = (first.addr.port(), second.addr.port());
    // The first member is up but its database is not: GET / works, lookup
    // and heartbeat get 503.
    first.state.lock().unwrap().unavailable = vec![p1];
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        &format!("{},{}", first.url(), second.url()),
        dir.path(),
        &[],
    );

    // Lookup: 503 at the first, then the second at once.
    let hb = second.wait_heartbeat_at(p2, 0, Duration::from_secs(30));
    let seen = first.state.lock().unwrap().seen.clone();
    let lookups: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/v1/lookup"))
        .map(|s| (s.server, s.status))
        .collect();
    assert_eq!(lookups.first(), Some(&(p1, 503)), "{seen:#?}");
    assert!(lookups.contains(&(p2, 200)), "{seen:#?}");

    // Now the second loses its database and the first recovers: the
    // heartbeats go back to the first (the next URL after the last).
    let after = first.count();
    first.state.lock().unwrap().unavailable = vec![p2];
    let back = first.wait_heartbeat_at(p1, after, Duration::from_secs(15));
    assert_eq!(back.body["agent_token"], hb.body["agent_token"]);
    let seen = first.state.lock().unwrap().seen.clone();
    assert!(
        seen[after..]
            .iter()
            .any(|s| s.server == p2 && s.path.starts_with("/v1/heartbeat/") && s.status == 503),
        "{seen:#?}"
    );

    // Both unavailable: heartbeats keep trying, alternating, with a bounded
    // backoff (the lookup's heartbeat_timeout is 2 s: at most 1 s between
    // rounds, jitter included); none of them makes the agent look up again.
    let after = first.count();
    first.state.lock().unwrap().unavailable = vec![p1, p2];
    std::thread::sleep(Duration::from_secs(4));
    let seen = first.state.lock().unwrap().seen.clone();
    let failed: Vec<u16> = seen[after..]
        .iter()
        .filter(|s| s.path.starts_with("/v1/heartbeat/") && s.status == 503)
        .map(|s| s.server)
        .collect();
    assert!(failed.contains(&p1) && failed.contains(&p2), "{failed:?}");
    assert!(failed.len() <= 40, "no backoff: {failed:?}");
    assert!(
        !seen[after..]
            .iter()
            .any(|s| s.path.starts_with("/v1/lookup")),
        "{seen:#?}"
    );
    // And they succeed again once a member is back.
    let after = first.count();
    first.state.lock().unwrap().unavailable.clear();
    first.wait_heartbeat(after, Duration::from_secs(10));
    drop(agent);
}
