//! DNS names learned from flows: (cluster, IP) → the names a DNS answer gave for it.
//!
//! When a flow carries a DNS answer (`dns`: query, answer IPs, TTL), each answer IP
//! remembers the query name until `observed + ttl + grace` in event time (the flow's end
//! time): clients keep connections open, and flow logs report them, well past the TTL. A
//! later flow to the address gets the names that are still valid at its start time.
//!
//! Memory is bounded per cluster: at most `max_entries` addresses (oldest insertion evicted
//! first — a FIFO of insertions, so eviction is O(1) and needs no per-access bookkeeping)
//! and at most [`MAX_NAMES_PER_IP`] names per address (the most recently answered kept:
//! CDN addresses serve many names). Expired entries at the front of the FIFO are dropped by
//! [`DnsNames::expire`]; expired names deeper in are ignored by lookups and go when evicted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use flowlake_schemas::{DnsObservation, Timestamp};

/// Names kept per address.
pub const MAX_NAMES_PER_IP: usize = 4;

/// TTL assumed when an answer carries none (Hubble leaves it out for some answers): a
/// typical public resolver's minimum.
const DEFAULT_TTL_SECS: i64 = 60;

#[derive(Debug)]
struct Entry {
    /// Names with the event time (µs) until which each is valid, most recent last.
    names: Vec<(Arc<str>, i64)>,
    /// Insertion sequence, to match the FIFO slot that owns the entry.
    seq: u64,
}

/// One cluster's learned names.
#[derive(Debug)]
pub struct DnsNames {
    by_ip: HashMap<IpAddr, Entry>,
    fifo: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
    max_entries: usize,
    grace_micros: i64,
}

impl DnsNames {
    /// An empty cache of at most `max_entries` addresses; names outlive their TTL by
    /// `grace`.
    pub fn new(max_entries: usize, grace: std::time::Duration) -> Self {
        DnsNames {
            by_ip: HashMap::new(),
            fifo: VecDeque::new(),
            next_seq: 0,
            max_entries: max_entries.max(1),
            grace_micros: i64::try_from(grace.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Learns the answer `dns` seen at `at` (event time).
    pub fn observe(&mut self, dns: &DnsObservation, at: Timestamp) {
        let query = dns.query.trim_end_matches('.');
        if query.is_empty() || dns.ips.is_empty() {
            return;
        }
        let ttl = dns.ttl.filter(|&t| t >= 0).unwrap_or(DEFAULT_TTL_SECS);
        let until = at
            .as_micros()
            .saturating_add(ttl.saturating_mul(1_000_000))
            .saturating_add(self.grace_micros);
        let mut name: Option<Arc<str>> = None;
        for ip in &dns.ips {
            let ip = ip.canonical().0;
            match self.by_ip.get_mut(&ip) {
                Some(entry) => {
                    if let Some(slot) = entry.names.iter().position(|(n, _)| &**n == query) {
                        // Re-answered: move to the back with the later expiry.
                        let (existing, old) = entry.names.remove(slot);
                        entry.names.push((existing, old.max(until)));
                    } else {
                        let shared = name.get_or_insert_with(|| Arc::from(query)).clone();
                        if entry.names.len() == MAX_NAMES_PER_IP {
                            entry.names.remove(0);
                        }
                        entry.names.push((shared, until));
                    }
                }
                None => {
                    let shared = name.get_or_insert_with(|| Arc::from(query)).clone();
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.by_ip.insert(
                        ip,
                        Entry {
                            names: vec![(shared, until)],
                            seq,
                        },
                    );
                    self.fifo.push_back((ip, seq));
                    self.evict_over_capacity();
                }
            }
        }
    }

    fn evict_over_capacity(&mut self) {
        while self.by_ip.len() > self.max_entries {
            let Some((ip, seq)) = self.fifo.pop_front() else {
                break;
            };
            if self.by_ip.get(&ip).is_some_and(|e| e.seq == seq) {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Appends the names of `ip` valid at `at` to `out` (skipping ones already there).
    pub fn names_into(&self, ip: IpAddr, at: Timestamp, out: &mut Vec<String>) {
        let Some(entry) = self.by_ip.get(&ip.to_canonical()) else {
            return;
        };
        for (name, until) in entry.names.iter().rev() {
            if *until >= at.as_micros() && !out.iter().any(|n| n == &**name) {
                out.push(name.to_string());
            }
        }
    }

    /// Drops entries at the front of the insertion order whose names all expired before
    /// `horizon`. Stops at the first live one, so a call is cheap.
    pub fn expire(&mut self, horizon: Timestamp) -> usize {
        let mut dropped = 0;
        while let Some(&(ip, seq)) = self.fifo.front() {
            match self.by_ip.get(&ip) {
                Some(entry) if entry.seq == seq => {
                    if entry
                        .names
                        .iter()
                        .any(|(_, until)| *until >= horizon.as_micros())
                    {
                        break;
                    }
                    self.by_ip.remove(&ip);
                    dropped += 1;
                }
                // The slot's entry was evicted or replaced already.
                _ => {}
            }
            self.fifo.pop_front();
        }
        dropped
    }

    /// Addresses with names.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flowlake_schemas::Ip;

    use super::*;

    fn answer(query: &str, ips: &[&str], ttl: Option<i64>) -> DnsObservation {
        DnsObservation {
            query: query.to_owned(),
            ips: ips.iter().filter_map(|i| i.parse::<Ip>().ok()).collect(),
            ttl,
        }
    }

    fn names(cache: &DnsNames, ip: &str, at: i64) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(ip) = ip.parse() {
            cache.names_into(ip, Timestamp::from_secs(at), &mut out);
        }
        out
    }

    #[test]
    fn names_live_for_ttl_plus_grace_in_event_time() {
        let mut cache = DnsNames::new(100, Duration::from_secs(10));
        cache.observe(
            &answer("api.stripe.com.", &["54.187.1.1", "54.187.1.2"], Some(30)),
            Timestamp::from_secs(1_000),
        );
        assert_eq!(names(&cache, "54.187.1.1", 1_020), vec!["api.stripe.com"]);
        assert_eq!(
            names(&cache, "::ffff:54.187.1.2", 1_040),
            vec!["api.stripe.com"]
        );
        assert!(names(&cache, "54.187.1.1", 1_041).is_empty());
        assert!(names(&cache, "54.187.1.3", 1_020).is_empty());
        // A second name for one address: most recent first.
        cache.observe(
            &answer("hooks.stripe.com", &["54.187.1.1"], Some(30)),
            Timestamp::from_secs(1_010),
        );
        assert_eq!(
            names(&cache, "54.187.1.1", 1_020),
            vec!["hooks.stripe.com", "api.stripe.com"]
        );
        assert_eq!(cache.len(), 2);
        // Everything expired by 1_060: the FIFO front goes.
        assert_eq!(cache.expire(Timestamp::from_secs(1_100)), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest_address_and_names_per_ip_are_capped() {
        let mut cache = DnsNames::new(2, Duration::ZERO);
        let at = Timestamp::from_secs(0);
        cache.observe(&answer("a.example", &["1.1.1.1"], Some(60)), at);
        cache.observe(&answer("b.example", &["2.2.2.2"], Some(60)), at);
        cache.observe(&answer("c.example", &["3.3.3.3"], Some(60)), at);
        assert_eq!(cache.len(), 2);
        assert!(names(&cache, "1.1.1.1", 1).is_empty());
        assert_eq!(names(&cache, "3.3.3.3", 1), vec!["c.example"]);
        for i in 0..6 {
            cache.observe(&answer(&format!("n{i}.cdn"), &["3.3.3.3"], Some(60)), at);
        }
        assert_eq!(
            names(&cache, "3.3.3.3", 1),
            vec!["n5.cdn", "n4.cdn", "n3.cdn", "n2.cdn"]
        );
    }
}
