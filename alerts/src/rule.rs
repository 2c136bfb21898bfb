//! The rule vocabulary: kind, metric, aggregate, comparison, severity and channel kind as enums,
//! each with the one list of its allowed values. Validation, the evaluator's SQL and the console's form all
//! read these lists; rules are stored and sent with the names (`as_str`). Builds for wasm.

use std::fmt;

/// An enum whose values have stable names: `ALL`, `as_str`, `parse` and serde by name.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order forms list them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored and sent name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `text`, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// Every name, comma-separated (for messages).
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// A string schema listing every name.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("{text:?} is not one of {}", Self::names()))
                })
            }
        }
    };
}

named!(
    /// What a rule watches.
    Kind {
        /// A metric of the node's heartbeats, aggregated over a window, against a threshold.
        Threshold = "threshold",
        /// The node has been suspect or offline for a while.
        Absence = "absence",
        /// Events (GPU XIDs, failed task runs) counted over a window, against a threshold.
        Event = "event",
        /// The archive's lag behind each stream, against a threshold; the alert's node is the
        /// stream. Needs the archive configured where the evaluator runs.
        Archive = "archive",
    }
);

named!(
    /// What a rule measures; each belongs to one kind.
    Metric {
        CpuPct = "cpu_pct",
        MemUsedPct = "mem_used_pct",
        DiskUsedPct = "disk_used_pct",
        Load1 = "load1",
        GpuTemperatureC = "gpu_temperature_c",
        GpuUtilPct = "gpu_util_pct",
        GpuMemUsedPct = "gpu_mem_used_pct",
        GpuPowerW = "gpu_power_w",
        Suspect = "suspect",
        Offline = "offline",
        GpuXidCritical = "gpu_xid_critical",
        GpuXid = "gpu_xid",
        TaskFailurePct = "task_failure_pct",
        ArchiveLagPct = "archive_lag_pct",
        RemediationBreaker = "remediation_breaker",
    }
);

named!(
    /// How a threshold rule folds its window.
    Aggregate {
        Avg = "avg",
        Min = "min",
        Max = "max",
        Last = "last",
    }
);

named!(
    /// How the value compares to the threshold.
    Op {
        Gt = ">",
        Ge = ">=",
        Lt = "<",
        Le = "<=",
    }
);

named!(
    /// Where a notification channel delivers.
    ChannelKind {
        /// A JSON POST, signed with HMAC-SHA256 when the channel has a secret.
        Webhook = "webhook",
        /// A Slack incoming webhook.
        Slack = "slack",
        /// `mailto:` recipients through the SMTP relay.
        Email = "email",
    }
);

named!(
    /// How urgent an alert is, least urgent first.
    Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
);

/// Rule and channel names: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Metric {
    /// The kind of rule it belongs to.
    pub fn kind(self) -> Kind {
        use Metric::*;
        match self {
            CpuPct | MemUsedPct | DiskUsedPct | Load1 | GpuTemperatureC | GpuUtilPct
            | GpuMemUsedPct | GpuPowerW => Kind::Threshold,
            Suspect | Offline => Kind::Absence,
            GpuXidCritical | GpuXid | TaskFailurePct | RemediationBreaker => Kind::Event,
            ArchiveLagPct => Kind::Archive,
        }
    }

    /// What it is, for people (the console's form). GPU metrics take the hottest or busiest GPU
    /// of the node in each sample.
    pub fn label(self) -> &'static str {
        use Metric::*;
        match self {
            CpuPct => "CPU busy, %",
            MemUsedPct => "memory used, %",
            DiskUsedPct => "root disk used, %",
            Load1 => "1-minute load average",
            GpuTemperatureC => "hottest GPU temperature, °C",
            GpuUtilPct => "busiest GPU utilisation, %",
            GpuMemUsedPct => "fullest GPU memory, %",
            GpuPowerW => "highest GPU power draw, W",
            Suspect => "node suspect or offline",
            Offline => "node offline",
            GpuXidCritical => "critical GPU XID events",
            GpuXid => "GPU XID events of any class",
            TaskFailurePct => "failed task runs, % of finished runs",
            ArchiveLagPct => "oldest event not archived, % of its stream's max_age",
            RemediationBreaker => "remediation circuit breaker open (1; node breaker)",
        }
    }

    /// A percentage: thresholds are 0 to 100.
    pub fn is_pct(self) -> bool {
        self.as_str().ends_with("_pct")
    }

    /// The metrics of `kind`, in form order.
    pub fn of(kind: Kind) -> impl Iterator<Item = Metric> {
        Self::ALL.iter().copied().filter(move |m| m.kind() == kind)
    }
}

impl Op {
    /// Whether `value` compares so to `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

impl Kind {
    /// Whether its condition compares a value to a threshold over a window (absence does not).
    pub fn has_threshold(self) -> bool {
        self != Kind::Absence
    }

    /// Whether its condition folds a window of data (absence and archive rules look at now).
    pub fn has_window(self) -> bool {
        matches!(self, Kind::Threshold | Kind::Event)
    }

    /// Whether it watches nodes (an archive rule watches the streams: it takes no scope).
    pub fn has_scope(self) -> bool {
        self != Kind::Archive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(*m));
        }
        assert_eq!(Op::parse(">="), Some(Op::Ge));
        assert_eq!(Severity::parse("page"), None);
        assert_eq!(Aggregate::names(), "avg, min, max, last");
    }

    #[test]
    fn every_kind_has_metrics_and_every_metric_one_kind() {
        let counts: Vec<usize> = Kind::ALL.iter().map(|k| Metric::of(*k).count()).collect();
        assert_eq!(counts, [8, 2, 4, 1]);
        assert_eq!(counts.iter().sum::<usize>(), Metric::ALL.len());
    }

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Op::Ge.holds(50.0, 50.0) && !Op::Gt.holds(50.0, 50.0));
        assert!(Op::Lt.holds(1.0, 2.0) && Op::Le.holds(2.0, 2.0) && !Op::Le.holds(2.1, 2.0));
    }

    #[test]
    fn serde_uses_the_names() {
        let json = serde_json::to_string(&(Kind::Absence, Op::Lt)).expect("json");
        assert_eq!(json, r#"["absence","<"]"#);
        let back: Severity = serde_json::from_str(r#""critical""#).expect("parse");
        assert_eq!(back, Severity::Critical);
        let err = serde_json::from_str::<Severity>(r#""page""#).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("not one of info, warning, critical")
        );
    }
}
