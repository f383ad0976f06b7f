//! What an escalation pass does with the notices it holds, the same in both adapters: each
//! adapter writes a step's move in its own SQL, then applies it here to the notice in memory.

use herald_core::notice::{Escalation, Notice, StepMove, StepStatus};

/// Applies a step's move to the notice as the pass holds it, and counts it: both adapters write
/// the same move in their own SQL, then call this.
pub(crate) fn apply_move(notice: &mut Notice, index: usize, step_move: &StepMove, pass: &mut Escalation) {
    let status = match step_move {
        StepMove::InApp(_) => StepStatus::Sent,
        StepMove::Dispatch(_) => StepStatus::Sending,
        StepMove::Skip(_) => StepStatus::Skipped,
        StepMove::Defer(..) => StepStatus::Deferred,
        StepMove::Expire => {
            // Steps handed to a channel end by their delivery's deadline, the notice's expiry.
            for step in
                notice.steps.iter_mut().filter(|s| matches!(s.status, StepStatus::Pending | StepStatus::Deferred))
            {
                step.status = StepStatus::Expired;
                pass.steps.push((step.channel, StepStatus::Expired));
            }
            notice.status = herald_core::notice::NoticeStatus::Expired;
            pass.settled.push(herald_core::notice::NoticeStatus::Expired);
            return;
        }
    };
    if let StepMove::InApp(event) = step_move {
        // Its in-app event went: a later in-app step of the same pass has nothing to send.
        notice.event.get_or_insert((event.stream, 0));
    }
    if let Some(step) = notice.steps.get_mut(index) {
        step.status = status;
        pass.steps.push((step.channel, status));
    }
}
