//! The liveness state machine, free of I/O: heartbeat arrivals and the tracker's own past
//! judgements go in, transitions come out.
//!
//! Rules:
//! - A node is judged by when its heartbeats *reach JetStream*, against its own heartbeat
//!   interval: `suspect` after `suspect_after_missed` intervals of silence, `offline` after a
//!   further grace period. One late heartbeat never makes a node suspect.
//! - Silence is only counted while the tracker itself is watching: the clock of every node starts
//!   no earlier than the moment the tracker (re)started, caught up with the stream, or got its NATS
//!   connection back (plus a resume grace the caller adds, for agents to reconnect). So a restart
//!   or outage of the control plane never turns the fleet offline.
//! - Any heartbeat that arrives after a node was judged suspect or offline brings it back.

use std::collections::HashMap;

/// A node's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Online,
    Suspect,
    Offline,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Suspect => "suspect",
            State::Offline => "offline",
        }
    }
}

/// When silence becomes suspect and offline.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub suspect_after_missed: u32,
    pub offline_grace_ms: i64,
}

/// A change of a node's liveness, to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub node_id: String,
    pub from: State,
    pub to: State,
    /// When the last heartbeat reached JetStream (0: none seen).
    pub last_heartbeat_ms: i64,
    pub silent_for_ms: i64,
    pub interval_secs: i32,
    pub missed: i32,
}

#[derive(Debug, Clone)]
struct Node {
    state: State,
    /// When the current state was entered (stream time of the liveness event that set it).
    state_since_ms: i64,
    last_heartbeat_ms: i64,
    interval_secs: i32,
}

/// Every known node's liveness.
#[derive(Debug)]
pub struct Tracker {
    thresholds: Thresholds,
    nodes: HashMap<String, Node>,
    /// Silence is counted from here at the earliest; `None` while not watching.
    watching_since_ms: Option<i64>,
}

impl Tracker {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            nodes: HashMap::new(),
            watching_since_ms: None,
        }
    }

    /// Replays a past judgement (the last liveness event of a node, from the log).
    pub fn restore(&mut self, node_id: &str, state: State, at_ms: i64, last_heartbeat_ms: i64) {
        let node = self.nodes.entry(node_id.to_owned()).or_insert(Node {
            state,
            state_since_ms: at_ms,
            last_heartbeat_ms,
            interval_secs: 0,
        });
        node.state = state;
        node.state_since_ms = at_ms;
        node.last_heartbeat_ms = node.last_heartbeat_ms.max(last_heartbeat_ms);
    }

    /// A heartbeat reached JetStream at `arrived_ms`. Returns the comeback of a node that was
    /// judged suspect or offline before this heartbeat arrived.
    pub fn heartbeat(
        &mut self,
        node_id: &str,
        arrived_ms: i64,
        interval_secs: i32,
    ) -> Option<Transition> {
        let node = self.nodes.entry(node_id.to_owned()).or_insert(Node {
            state: State::Online,
            state_since_ms: 0,
            last_heartbeat_ms: 0,
            interval_secs,
        });
        node.interval_secs = interval_secs.max(1);
        node.last_heartbeat_ms = node.last_heartbeat_ms.max(arrived_ms);
        (node.state != State::Online && arrived_ms > node.state_since_ms).then(|| Transition {
            node_id: node_id.to_owned(),
            from: node.state,
            to: State::Online,
            last_heartbeat_ms: node.last_heartbeat_ms,
            silent_for_ms: 0,
            interval_secs: node.interval_secs,
            missed: 0,
        })
    }

    /// Starts (or restarts, after an outage) counting silence from `now_ms` (which may lie in the
    /// future: the resume grace).
    pub fn watch_from(&mut self, now_ms: i64) {
        self.watching_since_ms = Some(now_ms);
    }

    /// Stops counting silence (NATS unreachable, or behind the stream).
    pub fn pause(&mut self) {
        self.watching_since_ms = None;
    }

    pub fn is_watching(&self) -> bool {
        self.watching_since_ms.is_some()
    }

    /// The transitions due at `now_ms`, in node id order. They are not applied: call
    /// [`Tracker::applied`] once each is published.
    pub fn judge(&self, now_ms: i64) -> Vec<Transition> {
        let Some(since) = self.watching_since_ms else {
            return Vec::new();
        };
        let mut due: Vec<Transition> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.interval_secs > 0 && n.state != State::Offline)
            .filter_map(|(id, n)| {
                let interval_ms = i64::from(n.interval_secs) * 1000;
                let counted = now_ms - n.last_heartbeat_ms.max(since);
                let suspect_after = interval_ms * i64::from(self.thresholds.suspect_after_missed);
                let to = if counted > suspect_after + self.thresholds.offline_grace_ms {
                    State::Offline
                } else if counted > suspect_after && n.state == State::Online {
                    State::Suspect
                } else {
                    return None;
                };
                let silent = now_ms - n.last_heartbeat_ms;
                Some(Transition {
                    node_id: id.clone(),
                    from: n.state,
                    to,
                    last_heartbeat_ms: n.last_heartbeat_ms,
                    silent_for_ms: if n.last_heartbeat_ms > 0 {
                        silent
                    } else {
                        counted
                    },
                    interval_secs: n.interval_secs,
                    missed: ((if n.last_heartbeat_ms > 0 {
                        silent
                    } else {
                        counted
                    }) / interval_ms)
                        .min(i64::from(i32::MAX)) as i32,
                })
            })
            .collect();
        due.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        due
    }

    /// Records a published transition.
    pub fn applied(&mut self, t: &Transition, at_ms: i64) {
        if let Some(n) = self.nodes.get_mut(&t.node_id) {
            n.state = t.to;
            n.state_since_ms = at_ms;
        }
    }

    /// How many nodes are in each state: (online, suspect, offline).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.nodes
            .values()
            .fold((0, 0, 0), |(on, su, off), n| match n.state {
                State::Online => (on + 1, su, off),
                State::Suspect => (on, su + 1, off),
                State::Offline => (on, su, off + 1),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        suspect_after_missed: 3,
        offline_grace_ms: 60_000,
    };
    const S: i64 = 1000;

    fn apply_all(t: &mut Tracker, now: i64) -> Vec<(String, State)> {
        let due = t.judge(now);
        for d in &due {
            t.applied(d, now);
        }
        due.into_iter().map(|d| (d.node_id, d.to)).collect()
    }

    #[test]
    fn silence_makes_a_node_suspect_then_offline_then_a_heartbeat_brings_it_back() {
        let mut t = Tracker::new(T);
        t.watch_from(0);
        t.heartbeat("n1", 0, 10);
        assert!(apply_all(&mut t, 30 * S).is_empty(), "3 intervals: not yet");
        assert_eq!(apply_all(&mut t, 31 * S), [("n1".into(), State::Suspect)]);
        assert!(apply_all(&mut t, 60 * S).is_empty(), "no repeat");
        assert!(apply_all(&mut t, 90 * S).is_empty(), "grace not over");
        assert_eq!(apply_all(&mut t, 91 * S), [("n1".into(), State::Offline)]);
        assert!(
            apply_all(&mut t, 500 * S).is_empty(),
            "offline stays offline quietly"
        );
        let back = t.heartbeat("n1", 501 * S, 10).expect("came back");
        assert_eq!((back.from, back.to), (State::Offline, State::Online));
        t.applied(&back, 501 * S);
        assert_eq!(t.counts(), (1, 0, 0));
    }

    #[test]
    fn one_late_heartbeat_is_not_flapping() {
        let mut t = Tracker::new(T);
        t.watch_from(0);
        let mut now = 0;
        for gap in [10, 10, 25, 10, 29, 10] {
            now += gap * S;
            assert!(t.heartbeat("n1", now, 10).is_none());
            assert!(apply_all(&mut t, now + 29 * S).is_empty(), "gap {gap}");
        }
    }

    #[test]
    fn a_restarted_tracker_counts_silence_from_its_own_start() {
        // The tracker was down for 10 minutes; the last heartbeats it finds are that old.
        let mut t = Tracker::new(T);
        for i in 0..100 {
            t.heartbeat(&format!("n{i}"), 0, 10);
        }
        let restart = 600 * S;
        assert!(t.judge(restart).is_empty(), "not watching yet");
        t.watch_from(restart);
        assert!(
            apply_all(&mut t, restart + 30 * S).is_empty(),
            "no mass suspect"
        );
        // Nodes that keep beating stay online; the one that really died is found a window later.
        for i in 1..100 {
            t.heartbeat(&format!("n{i}"), restart + 25 * S, 10);
        }
        assert_eq!(
            apply_all(&mut t, restart + 31 * S),
            [("n0".into(), State::Suspect)]
        );
    }

    #[test]
    fn a_paused_tracker_judges_nothing_and_resumes_with_a_fresh_window() {
        let mut t = Tracker::new(T);
        t.watch_from(0);
        t.heartbeat("n1", 0, 10);
        t.pause();
        assert!(t.judge(1000 * S).is_empty());
        t.watch_from(1000 * S);
        assert!(t.judge(1030 * S).is_empty());
        assert_eq!(t.judge(1031 * S).len(), 1);
    }

    #[test]
    fn past_judgements_are_restored_and_old_heartbeats_do_not_undo_them() {
        let mut t = Tracker::new(T);
        t.restore("n1", State::Offline, 700 * S, 100 * S);
        // Replaying the node's last heartbeat (stored before it was judged offline).
        assert!(t.heartbeat("n1", 100 * S, 10).is_none());
        t.watch_from(800 * S);
        assert!(apply_all(&mut t, 2000 * S).is_empty(), "already offline");
        assert!(t.heartbeat("n1", 2001 * S, 10).is_some(), "a new one does");
    }

    #[test]
    fn a_long_silence_goes_straight_to_offline() {
        let mut t = Tracker::new(T);
        t.watch_from(0);
        t.heartbeat("n1", 0, 10);
        let due = t.judge(200 * S);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].from, due[0].to), (State::Online, State::Offline));
        assert_eq!(due[0].missed, 20);
        assert_eq!(due[0].silent_for_ms, 200 * S);
    }
}
