//! Shadow decisions: sent to the shadow decisions topic in the open unit
//! of work (so under the same guarantee as the live ones), never acted on.

use earlykill_core::shadow::ShadowDecision;

use super::Out;
use crate::processor::broker::Broker;
use crate::processor::committer::Failure;
use crate::telemetry;

impl Out {
    /// Sends the shadow policies' decisions, emptying `decisions`.
    pub(super) fn shadow_decisions(
        &mut self,
        broker: &impl Broker,
        decisions: &mut Vec<ShadowDecision>,
    ) -> Result<(), Failure> {
        if decisions.is_empty() {
            return Ok(());
        }
        self.begin(broker)?;
        for shadow in decisions.drain(..) {
            let label = self.committer.work().label();
            self.output
                .shadow_decision(broker, &shadow, label)
                .map_err(|e| self.committer.failed_output(broker, e))?;
            telemetry::shadow_decision(&shadow.policy, shadow.decision.kind);
        }
        Ok(())
    }
}
