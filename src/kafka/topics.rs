//! The topics earlykill reads and writes, by role, with their documented
//! default names.

use earlykill_core::event::InputTopic;

/// The topics the processor reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// VariantPosted input.
    pub posted: String,
    /// Interaction input.
    pub interactions: String,
    /// StopMonitoring input.
    pub commands: String,
    /// Decisions output.
    pub decisions: String,
    /// Compacted state changelog.
    pub changelog: String,
    /// Dead letters.
    pub dead_letters: String,
}

/// The documented names: `earlykill.posted`, `earlykill.interactions`,
/// `earlykill.commands`, `earlykill.decisions`, `earlykill.changelog`,
/// `earlykill.dead-letters`.
impl Default for Topics {
    fn default() -> Self {
        Topics {
            posted: "earlykill.posted".to_owned(),
            interactions: "earlykill.interactions".to_owned(),
            commands: "earlykill.commands".to_owned(),
            decisions: "earlykill.decisions".to_owned(),
            changelog: "earlykill.changelog".to_owned(),
            dead_letters: "earlykill.dead-letters".to_owned(),
        }
    }
}

impl Topics {
    /// The name of an input topic.
    pub fn input(&self, topic: InputTopic) -> &str {
        match topic {
            InputTopic::Posted => &self.posted,
            InputTopic::Interactions => &self.interactions,
            InputTopic::Commands => &self.commands,
        }
    }
}
