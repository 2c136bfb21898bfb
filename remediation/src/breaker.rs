//! The circuit breaker, I/O-free: within a sliding window at most `max_nodes` nodes in all, and
//! at most `max_pct` % of any one group (a node's cluster, or the fleet for nodes in none; never
//! less than one node), may enter remediation. The start that would go past either trips the
//! breaker; once open it holds every policy until an admin resets it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the breaker says of a start.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admitted,
    /// This start tripped it: `started` nodes of the group began within the window, `limit`.
    Tripped {
        started: usize,
        limit: usize,
    },
    /// It was open already.
    Held,
}

/// The window of starts per group, and whether the breaker is open.
#[derive(Debug)]
pub struct Breaker {
    window: Duration,
    max_nodes: usize,
    max_pct: f64,
    /// Starts per group, and in all.
    starts: HashMap<String, VecDeque<Instant>>,
    all: VecDeque<Instant>,
    open: bool,
}

/// Drops the starts that left the window.
fn prune(starts: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while starts
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        starts.pop_front();
    }
}

impl Breaker {
    pub fn new(window: Duration, max_nodes: usize, max_pct: f64) -> Self {
        Self {
            window,
            max_nodes,
            max_pct,
            starts: HashMap::new(),
            all: VecDeque::new(),
            open: false,
        }
    }

    /// How many nodes of a group of `size` may start per window (the fleet-wide limit too).
    pub fn limit(&self, size: usize) -> usize {
        let by_pct = (size as f64 * self.max_pct / 100.0).floor() as usize;
        self.max_nodes.min(by_pct).max(1)
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Sets the state read back from the journal (open: tripped and not reset).
    pub fn set_open(&mut self, open: bool) {
        self.open = open;
        if !open {
            self.starts.clear();
            self.all.clear();
        }
    }

    /// A node of `group` (of `size` nodes) asks to enter remediation at `now`.
    pub fn admit(&mut self, now: Instant, group: &str, size: usize) -> Decision {
        if self.open {
            return Decision::Held;
        }
        prune(&mut self.all, now, self.window);
        let by_pct = ((size as f64 * self.max_pct / 100.0).floor() as usize).max(1);
        let starts = self.starts.entry(group.to_owned()).or_default();
        prune(starts, now, self.window);
        let over = if self.all.len() >= self.max_nodes {
            Some((self.all.len() + 1, self.max_nodes))
        } else if starts.len() >= by_pct {
            Some((starts.len() + 1, by_pct))
        } else {
            None
        };
        if let Some((started, limit)) = over {
            self.open = true;
            return Decision::Tripped { started, limit };
        }
        starts.push_back(now);
        self.all.push_back(now);
        Decision::Admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_is_the_lesser_of_ten_nodes_and_five_percent() {
        let b = Breaker::new(Duration::from_secs(600), 10, 5.0);
        assert_eq!(b.limit(6000), 10);
        assert_eq!(b.limit(100), 5);
        assert_eq!(b.limit(8), 1, "never less than one node");
    }

    #[test]
    fn past_the_limit_it_trips_holds_and_resets() {
        let mut b = Breaker::new(Duration::from_secs(600), 2, 100.0);
        let t0 = Instant::now();
        assert_eq!(b.admit(t0, "", 100), Decision::Admitted);
        assert_eq!(b.admit(t0, "", 100), Decision::Admitted);
        assert_eq!(
            b.admit(t0, "", 100),
            Decision::Tripped {
                started: 3,
                limit: 2
            }
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(3600), "", 100),
            Decision::Held
        );
        b.set_open(false);
        assert_eq!(b.admit(t0, "", 100), Decision::Admitted);
    }

    #[test]
    fn the_window_slides_and_groups_count_apart_within_the_fleet_limit() {
        // A group of 10 at 10 %: one node per group; ten nodes in all.
        let mut b = Breaker::new(Duration::from_secs(600), 10, 10.0);
        let t0 = Instant::now();
        assert_eq!(b.admit(t0, "a", 10), Decision::Admitted);
        assert_eq!(b.admit(t0, "b", 10), Decision::Admitted);
        let later = t0 + Duration::from_secs(600);
        assert_eq!(
            b.admit(later, "a", 10),
            Decision::Admitted,
            "the window slid"
        );
        assert!(!b.is_open());
        assert_eq!(
            b.admit(later, "a", 10),
            Decision::Tripped {
                started: 2,
                limit: 1
            }
        );
        let mut fleet = Breaker::new(Duration::from_secs(600), 3, 100.0);
        for g in ["a", "b", "c"] {
            assert_eq!(fleet.admit(t0, g, 100), Decision::Admitted);
        }
        assert_eq!(
            fleet.admit(t0, "d", 100),
            Decision::Tripped {
                started: 4,
                limit: 3
            },
            "ten nodes in all, whatever their groups"
        );
    }
}
