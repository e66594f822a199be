//! Power changes requested through `PUT /v1/nodes/{id}/states/power`.

use tracing::info;

use super::outcome::{Outcome, Until};
use super::{Conductor, ConductorError, Next};
use crate::model::Node;
#[cfg(test)]
use crate::power::PowerState;
use crate::power::{PowerAction, PowerError};

impl Conductor {
    pub(super) async fn handle_power_intent(&self, node: Node) -> Result<Next, ConductorError> {
        let Some(node) = self.lock(&node.uuid, |n| n.power_intent.is_some()).await? else {
            return Ok(Next::Idle);
        };
        let Some(intent) = node.power_intent.clone() else {
            return Ok(Next::Idle);
        };
        let action = intent.target;
        let result = self.set_power(&node, action).await.map(|()| action);
        if result.is_ok() {
            info!(node = %node.uuid, target = %action, "power state changed");
        }
        self.apply(&node.uuid, power_changed(action, result)).await
    }
}

/// The end of a power change to `target`: the new power state, or the
/// error in `last_error`; the request is done either way and the node keeps
/// its provision state (the handler looks at it again at once).
fn power_changed(target: PowerAction, result: Result<PowerAction, PowerError>) -> Outcome {
    match result {
        Ok(action) => {
            let state = action.resulting_state();
            Outcome::wait_with(Until::Now, move |n| {
                n.power_state = Some(state);
                n.target_power_state = None;
                n.power_intent = None;
            })
        }
        Err(e) => {
            let msg =
                format!("Failed to change power state to '{target}' by '{target}'. Error: {e}");
            Outcome::wait_with(Until::Now, move |n| {
                n.target_power_state = None;
                n.power_intent = None;
                n.last_error = Some(msg.clone());
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_change_is_recorded_and_the_request_forgotten() {
        let mut n = Node {
            power_state: Some(PowerState::Off),
            target_power_state: Some(PowerState::On),
            ..Node::default()
        };
        let before = n.provision_state;
        power_changed(PowerAction::On, Ok(PowerAction::On))
            .apply_to(&mut n)
            .unwrap();
        assert_eq!(n.power_state, Some(PowerState::On));
        assert_eq!(n.target_power_state, None);
        assert_eq!(n.provision_state, before);
        power_changed(PowerAction::Off, Err(PowerError::Unsupported("no".into())))
            .apply_to(&mut n)
            .unwrap();
        assert_eq!(n.power_state, Some(PowerState::On));
        assert!(
            n.last_error
                .as_deref()
                .is_some_and(|e| e.contains("'power off'"))
        );
    }
}
