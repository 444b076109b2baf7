//! A run of released records folded at once.

use earlykill_core::event::{InputTopic, MonitoringDecision};
use earlykill_core::merge::Entry;
use earlykill_core::monitor::{Input, Outcome};

use super::Out;
use crate::processor::broker::Broker;
use crate::processor::committer::Failure;
use crate::processor::intake::{after_fold, DeadLetter};
use crate::processor::partition::{Partition, Record};
use crate::processor::ProcessorConfig;

/// Folds one run of released records (decoded when they were read) with
/// [`earlykill_core::monitor::Monitor::apply_batch`], then
/// sends, record by record in their order, each one's dead letter and the
/// decisions it made: what folding them one by one would send.
pub(super) fn fold_run(
    out: &mut Out,
    broker: &impl Broker,
    config: &ProcessorConfig,
    p: i32,
    part: &mut Partition,
    decisions: &mut Vec<MonitoringDecision>,
    run: &[(InputTopic, Entry<Record>)],
) -> Result<(), Failure> {
    let inputs: Vec<Input<'_, '_>> = run
        .iter()
        .filter_map(|(_, entry)| match &entry.item {
            Record::Event { event, .. } => Some(Input::from(event)),
            Record::Dead(_) => None,
        })
        .collect();
    let mut folded: Vec<(Outcome, usize)> = Vec::with_capacity(inputs.len());
    part.monitor
        .apply_batch(&inputs, decisions, |_, outcome, made| {
            folded.push((outcome, made))
        });
    let mut shadow = Vec::new();
    part.shadows.apply_batch(&inputs, &mut shadow);
    let mut made = decisions.drain(..);
    let (mut next, mut sent) = (0, 0);
    for (topic, entry) in run {
        let (appended, post) = match &entry.item {
            Record::Event { appended, post, .. } => (*appended, post),
            Record::Dead(dead) => {
                out.dead_letter(broker, *topic, dead.as_ref())?;
                continue;
            }
        };
        let (outcome, upto) = folded[next];
        let input = inputs[next];
        next += 1;
        if let Some(rejection) = after_fold(outcome, input, config.monitor.max_sessions) {
            // Only a post is refused, and a post keeps its bytes.
            let (key, value) = post
                .as_deref()
                .map_or((None, None), |b| (Some(&b.key[..]), Some(&b.value[..])));
            let dead = DeadLetter::refused(key, value, p, entry.offset, rejection);
            out.dead_letter(broker, *topic, &dead)?;
        }
        out.send(broker, made.by_ref().take(upto - sent), Some(appended))?;
        sent = upto;
    }
    drop(made);
    out.shadow_decisions(broker, &mut shadow)
}
