//! Shadow policies: other thresholds folded over the same input as the
//! live policy, whose decisions are published and never acted on.
//!
//! Each shadow policy is a [`Monitor`] of its own, configured as the live
//! one but for its thresholds (a post's own thresholds still win, as in
//! the live fold and in `backtest`), fed every input the live monitor is
//! fed, in the same order, and advanced to the same times. So its
//! decisions are exactly those of a live fold with its thresholds, and the
//! live fold does not change with or without shadows (it is not touched).
//!
//! The hold-out share adds one more: the policy [`HOLDOUT`], the live
//! thresholds applied to the held-out variants only, which the live policy
//! watches but never kills (see [`Holdout`]). Its kills are the ones the
//! live policy would have made.
//!
//! A shadow decision's id is the live one's with `~` and the policy name
//! after it: deterministic, and never equal to a live decision's id.
//!
//! Shadow state is kept in the same changelog as the live state, each
//! record under [`shadow_key`]: a first byte `0xFF`, which no UTF-8 string
//! (so no variant id) starts with, then the policy name, a `0x00` and the
//! variant id.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::event::{ChangelogRecord, Millis, MonitoringDecision};
use crate::monitor::rule::Thresholds;
use crate::monitor::{
    ChangelogChange, Holdout, Input, Monitor, MonitorConfig, Rebuild, RestoreError, SessionView,
};

/// The name of the hold-out policy.
pub const HOLDOUT: &str = "holdout";

/// Most bytes in a policy name.
pub const MAX_NAME_BYTES: usize = 64;

/// The first byte of a shadow policy's changelog key.
pub const SHADOW_KEY_MARK: u8 = 0xFF;

/// A shadow policy: a name and the thresholds it changes (the others are
/// the live defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowPolicy {
    /// Its name, in decision ids and the `earlykill.policy` header.
    pub name: String,
    /// `kill-threshold`.
    pub kill_threshold: Option<f64>,
    /// `min-interactions`.
    pub min_interactions: Option<u32>,
    /// `timeout-minutes`.
    pub timeout_minutes: Option<u32>,
}

impl ShadowPolicy {
    /// Its thresholds, the live `defaults` where it sets none.
    pub fn thresholds(&self, defaults: Thresholds) -> Thresholds {
        Thresholds {
            kill_threshold: self.kill_threshold.unwrap_or(defaults.kill_threshold),
            min_interactions: self.min_interactions.unwrap_or(defaults.min_interactions),
            timeout_minutes: self.timeout_minutes.unwrap_or(defaults.timeout_minutes),
        }
    }
}

impl fmt::Display for ShadowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        let mut sep = "";
        if let Some(t) = self.kill_threshold {
            write!(f, "kill-threshold={t}")?;
            sep = ",";
        }
        if let Some(m) = self.min_interactions {
            write!(f, "{sep}min-interactions={m}")?;
            sep = ",";
        }
        if let Some(m) = self.timeout_minutes {
            write!(f, "{sep}timeout-minutes={m}")?;
        }
        Ok(())
    }
}

/// Why a shadow policy could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// No `:` after the name.
    #[error("{0:?} is not NAME:key=value,...: for example candidate:kill-threshold=0.4")]
    Shape(String),
    /// A name that is empty, too long, reserved or has other characters.
    #[error(
        "policy name {0:?}: 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 . _ -, and not {HOLDOUT:?} \
         (the hold-out share's own policy, see --holdout-share)"
    )]
    Name(String),
    /// An unknown key.
    #[error(
        "policy {policy:?}: unknown key {key:?} (known: kill-threshold, min-interactions, \
         timeout-minutes)"
    )]
    Key {
        /// The policy.
        policy: String,
        /// The key.
        key: String,
    },
    /// A value out of range.
    #[error("policy {policy:?}: {key}={value:?} must be {range}")]
    Value {
        /// The policy.
        policy: String,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        range: &'static str,
    },
    /// Two policies of one name.
    #[error("policy {0:?} is given twice")]
    Duplicate(String),
}

impl FromStr for ShadowPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, settings) = s
            .split_once(':')
            .ok_or_else(|| PolicyError::Shape(s.to_owned()))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(valid) {
            return Err(PolicyError::Name(name.to_owned()));
        }
        if name == HOLDOUT {
            return Err(PolicyError::Name(name.to_owned()));
        }
        let mut policy = ShadowPolicy {
            name: name.to_owned(),
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
        };
        for setting in settings.split(',').filter(|s| !s.trim().is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| PolicyError::Shape(s.to_owned()))?;
            let (key, value) = (key.trim(), value.trim());
            let bad = |key: &'static str, range: &'static str| PolicyError::Value {
                policy: name.to_owned(),
                key,
                value: value.to_owned(),
                range,
            };
            match key {
                "kill-threshold" => {
                    let t: f64 = value
                        .parse()
                        .map_err(|_| bad("kill-threshold", "a number in (0, 1]"))?;
                    if !(t > 0.0 && t <= 1.0) {
                        return Err(bad("kill-threshold", "a number in (0, 1]"));
                    }
                    policy.kill_threshold = Some(t);
                }
                "min-interactions" => {
                    let m: u32 = value
                        .parse()
                        .ok()
                        .filter(|m| *m >= 1)
                        .ok_or_else(|| bad("min-interactions", "a whole number >= 1"))?;
                    policy.min_interactions = Some(m);
                }
                "timeout-minutes" => {
                    let m: u32 = value
                        .parse()
                        .ok()
                        .filter(|m| (1..=10_080).contains(m))
                        .ok_or_else(|| bad("timeout-minutes", "a whole number from 1 to 10080"))?;
                    policy.timeout_minutes = Some(m);
                }
                other => {
                    return Err(PolicyError::Key {
                        policy: name.to_owned(),
                        key: other.to_owned(),
                    })
                }
            }
        }
        Ok(policy)
    }
}

/// Checks that no two policies share a name.
pub fn check_unique(policies: &[ShadowPolicy]) -> Result<(), PolicyError> {
    for (i, p) in policies.iter().enumerate() {
        if policies[..i].iter().any(|q| q.name == p.name) {
            return Err(PolicyError::Duplicate(p.name.clone()));
        }
    }
    Ok(())
}

/// The changelog key of `variant_id`'s state under shadow policy `policy`.
pub fn shadow_key(policy: &str, variant_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + policy.len() + variant_id.len());
    key.push(SHADOW_KEY_MARK);
    key.extend_from_slice(policy.as_bytes());
    key.push(0);
    key.extend_from_slice(variant_id.as_bytes());
    key
}

/// The policy and variant of a shadow changelog key; `None` for any other
/// key (a variant id, the partition record's empty key, or a malformed
/// one).
pub fn parse_shadow_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(&[SHADOW_KEY_MARK])?;
    let at = rest.iter().position(|b| *b == 0)?;
    let policy = std::str::from_utf8(&rest[..at]).ok()?;
    let variant = std::str::from_utf8(&rest[at + 1..]).ok()?;
    Some((policy, variant))
}

/// A decision of a shadow policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowDecision {
    /// The policy's name.
    pub policy: Arc<str>,
    /// What it decided (its id ends in `~` and the policy name).
    pub decision: MonitoringDecision,
}

struct Shadow {
    name: Arc<str>,
    monitor: Monitor,
}

/// The configurations of a partition's shadow policies: each policy's
/// name and monitor configuration, `holdout` last when there is a share.
pub fn shadow_configs(
    live: &MonitorConfig,
    policies: &[ShadowPolicy],
) -> Vec<(Arc<str>, MonitorConfig)> {
    let mut configs: Vec<(Arc<str>, MonitorConfig)> = policies
        .iter()
        .map(|p| {
            let config = MonitorConfig {
                defaults: p.thresholds(live.defaults),
                holdout: Holdout::None,
                ..*live
            };
            (Arc::from(p.name.as_str()), config)
        })
        .collect();
    if let Holdout::Spare { parts_per_million } = live.holdout {
        if parts_per_million > 0 {
            let config = MonitorConfig {
                holdout: Holdout::Only { parts_per_million },
                ..*live
            };
            configs.push((Arc::from(HOLDOUT), config));
        }
    }
    configs
}

/// The live policy's configuration and the shadow policies'.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    /// The live fold.
    pub live: MonitorConfig,
    /// Each shadow policy's name and fold, as [`shadow_configs`] makes them.
    pub shadows: Vec<(Arc<str>, MonitorConfig)>,
}

impl Policies {
    /// The live configuration `live` (its hold-out share included) and the
    /// shadow `policies`.
    pub fn new(live: MonitorConfig, policies: &[ShadowPolicy]) -> Policies {
        Policies {
            live,
            shadows: shadow_configs(&live, policies),
        }
    }
}

/// A partition's shadow policies.
#[derive(Default)]
pub struct Shadows {
    shadows: Vec<Shadow>,
}

impl Shadows {
    /// Empty shadow policies of `configs` (see [`shadow_configs`]).
    pub fn new(configs: Vec<(Arc<str>, MonitorConfig)>) -> Shadows {
        Shadows {
            shadows: configs
                .into_iter()
                .map(|(name, config)| Shadow {
                    name,
                    monitor: Monitor::new(config),
                })
                .collect(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.shadows.is_empty()
    }

    /// The policies' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.shadows.iter().map(|s| &s.name)
    }

    /// Each policy's monitor, by name.
    pub fn monitors(&self) -> impl Iterator<Item = (&Arc<str>, &Monitor)> + '_ {
        self.shadows.iter().map(|s| (&s.name, &s.monitor))
    }

    /// Folds `inputs` into every policy, appending what each decided.
    pub fn apply_batch(&mut self, inputs: &[Input<'_, '_>], out: &mut Vec<ShadowDecision>) {
        let mut decisions = Vec::new();
        for shadow in &mut self.shadows {
            shadow
                .monitor
                .apply_batch(inputs, &mut decisions, |_, _, _| {});
            publish(&shadow.name, &mut decisions, out);
        }
    }

    /// [`Monitor::advance_to`] on every policy.
    pub fn advance_to(&mut self, time: Millis, out: &mut Vec<ShadowDecision>) {
        let mut decisions = Vec::new();
        for shadow in &mut self.shadows {
            shadow.monitor.advance_to(time, &mut decisions);
            publish(&shadow.name, &mut decisions, out);
        }
    }

    /// [`Monitor::settle`] on every policy.
    pub fn settle(&mut self, out: &mut Vec<ShadowDecision>) {
        let mut decisions = Vec::new();
        for shadow in &mut self.shadows {
            shadow.monitor.settle(&mut decisions);
            publish(&shadow.name, &mut decisions, out);
        }
    }

    /// The earliest time any policy has something due.
    pub fn next_due(&self) -> Option<Millis> {
        self.shadows
            .iter()
            .filter_map(|s| s.monitor.next_due())
            .min()
    }

    /// Every policy's session changes since the last drain, each naming
    /// its policy (the partition record is the live monitor's to write).
    pub fn drain_changes(&mut self) -> Vec<ChangelogChange> {
        let mut changes = Vec::new();
        for shadow in &mut self.shadows {
            for mut change in shadow.monitor.drain_changes() {
                if change.key != ChangelogRecord::PARTITION_KEY {
                    change.policy = Some(shadow.name.clone());
                    changes.push(change);
                }
            }
        }
        changes
    }

    /// What each policy knows of `variant_id`.
    pub fn verdicts(&self, variant_id: &str) -> Vec<(Arc<str>, SessionView)> {
        self.shadows
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.monitor.session(variant_id)?)))
            .collect()
    }
}

fn publish(
    name: &Arc<str>,
    decisions: &mut Vec<MonitoringDecision>,
    out: &mut Vec<ShadowDecision>,
) {
    for mut decision in decisions.drain(..) {
        decision.decision_id.push('~');
        decision.decision_id.push_str(name);
        out.push(ShadowDecision {
            policy: name.clone(),
            decision,
        });
    }
}

/// Shadow policies being rebuilt from a partition's changelog, beside the
/// live [`Rebuild`]: each policy's records go to its own rebuild, and each
/// partition record to all of them (it carries the clock and closes a
/// commit, see [`Rebuild::push`]).
pub struct ShadowRebuild {
    rebuilds: Vec<(Arc<str>, Rebuild)>,
    /// Records of policies not configured now, skipped.
    pub skipped: u64,
}

impl ShadowRebuild {
    /// Empty rebuilds of `configs`.
    pub fn new(configs: Vec<(Arc<str>, MonitorConfig)>) -> ShadowRebuild {
        ShadowRebuild {
            rebuilds: configs
                .into_iter()
                .map(|(name, config)| (name, Rebuild::new(config)))
                .collect(),
            skipped: 0,
        }
    }

    /// The partition record, for every policy.
    pub fn push_partition(&mut self, record: &Option<ChangelogRecord>) -> Result<(), RestoreError> {
        for (_, rebuild) in &mut self.rebuilds {
            rebuild.push(ChangelogRecord::PARTITION_KEY, record.clone(), false)?;
        }
        Ok(())
    }

    /// A shadow policy's record.
    pub fn push(
        &mut self,
        policy: &str,
        variant_id: &str,
        record: Option<ChangelogRecord>,
        names_commit: bool,
    ) -> Result<(), RestoreError> {
        match self.rebuilds.iter_mut().find(|(name, _)| &**name == policy) {
            Some((_, rebuild)) => rebuild.push(variant_id, record, names_commit),
            None => {
                self.skipped += 1;
                Ok(())
            }
        }
    }

    /// The policies, once the whole log is read, and how many of their
    /// records a torn commit left (ignored, and rewritten by the next
    /// commit, as [`Rebuild::finish`] does).
    pub fn finish(self) -> Result<(Shadows, usize), RestoreError> {
        let mut shadows = Vec::with_capacity(self.rebuilds.len());
        let mut torn = 0;
        for (name, rebuild) in self.rebuilds {
            let rebuilt = rebuild.finish()?;
            torn += rebuilt.torn;
            shadows.push(Shadow {
                name,
                monitor: rebuilt.monitor,
            });
        }
        Ok((Shadows { shadows }, torn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_any_subset_of_its_keys() {
        let p: ShadowPolicy = "strict:kill-threshold=0.6,timeout-minutes=5"
            .parse()
            .unwrap();
        assert_eq!(p.kill_threshold, Some(0.6));
        assert_eq!(p.min_interactions, None);
        assert_eq!(p.timeout_minutes, Some(5));
        assert_eq!(p.to_string(), "strict:kill-threshold=0.6,timeout-minutes=5");
        let t = p.thresholds(Thresholds::default());
        assert_eq!(t.min_interactions, Thresholds::default().min_interactions);
        let bare: ShadowPolicy = "same:".parse().unwrap();
        assert_eq!(
            bare.thresholds(Thresholds::default()),
            Thresholds::default()
        );
    }

    #[test]
    fn a_bad_policy_says_what_is_wrong() {
        let err = |s: &str| s.parse::<ShadowPolicy>().unwrap_err().to_string();
        assert!(err("candidate").contains("NAME:key=value"));
        assert!(err("holdout:kill-threshold=0.4").contains("hold-out"));
        assert!(err("a b:kill-threshold=0.4").contains("policy name"));
        assert!(err("c:kill-treshold=0.4").contains("unknown key \"kill-treshold\""));
        assert!(err("c:kill-threshold=1.5").contains("(0, 1]"));
        assert!(err("c:min-interactions=0").contains(">= 1"));
        let twice = [
            "a:".parse().unwrap(),
            "a:kill-threshold=0.2".parse().unwrap(),
        ];
        assert_eq!(
            check_unique(&twice),
            Err(PolicyError::Duplicate("a".into()))
        );
    }

    #[test]
    fn shadow_keys_round_trip_and_no_variant_id_parses_as_one() {
        let key = shadow_key("candidate", "v-1");
        assert_eq!(parse_shadow_key(&key), Some(("candidate", "v-1")));
        assert_eq!(parse_shadow_key(b"v-1"), None);
        assert_eq!(parse_shadow_key(b""), None);
        assert!(std::str::from_utf8(&key).is_err());
    }
}
