//! A run of released records folded at once.

use earlykill_core::event::{Decoded, InputTopic, Millis, MonitoringDecision, Rejection};
use earlykill_core::merge::Entry;
use earlykill_core::monitor::{Input, Outcome};

use super::Out;
use crate::processor::broker::Broker;
use crate::processor::committer::Failure;
use crate::processor::intake::{after_fold, DeadLetter, Intake};
use crate::processor::partition::{Partition, Record};
use crate::processor::ProcessorConfig;

/// Folds one run of released records with [`earlykill_core::monitor::Monitor::apply_batch`], then
/// sends, record by record in their order, each one's dead letter and the
/// decisions it made: what folding them one by one would send.
#[allow(clippy::too_many_arguments)]
pub(super) fn fold_run(
    out: &mut Out,
    broker: &impl Broker,
    intake: &Intake,
    config: &ProcessorConfig,
    wall: Millis,
    p: i32,
    part: &mut Partition,
    decisions: &mut Vec<MonitoringDecision>,
    run: &[(InputTopic, Entry<Record>)],
) -> Result<(), Failure> {
    let decoded: Vec<Option<Result<Decoded<'_>, Rejection>>> = run
        .iter()
        .map(|(topic, entry)| match &entry.item {
            Record::Event { key, value, .. } => {
                Some(intake.decode(*topic, Some(key), Some(value), config, wall))
            }
            Record::Dead(_) => None,
        })
        .collect();
    let inputs: Vec<Input<'_, '_>> = decoded
        .iter()
        .filter_map(|d| match d {
            Some(Ok(decoded)) => Some(Input::from(decoded)),
            _ => None,
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
    for ((topic, entry), decoded) in run.iter().zip(&decoded) {
        let (key, value, appended) = match &entry.item {
            Record::Event {
                key,
                value,
                appended,
            } => (key, value, appended.to_owned()),
            Record::Dead(dead) => {
                out.dead_letter(broker, *topic, dead.as_ref())?;
                continue;
            }
        };
        let rejection = match decoded {
            Some(Ok(_)) => {
                let (outcome, upto) = folded[next];
                let input = inputs[next];
                next += 1;
                let rejection = after_fold(outcome, input, config.monitor.max_sessions);
                if let Some(rejection) = rejection {
                    let dead =
                        DeadLetter::refused(Some(key), Some(value), p, entry.offset, rejection);
                    out.dead_letter(broker, *topic, &dead)?;
                }
                out.send(broker, made.by_ref().take(upto - sent), Some(appended))?;
                sent = upto;
                continue;
            }
            Some(Err(rejection)) => rejection.clone(),
            None => unreachable!("an event record is decoded"),
        };
        let dead = DeadLetter::refused(Some(key), Some(value), p, entry.offset, rejection);
        out.dead_letter(broker, *topic, &dead)?;
    }
    drop(made);
    out.shadow_decisions(broker, &mut shadow)
}
