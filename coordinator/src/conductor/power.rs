//! Power changes requested through `PUT /v1/nodes/{id}/states/power`.

use tracing::info;

use super::{Conductor, ConductorError, Next};
use crate::model::Node;
use crate::power::PowerAction;

impl Conductor {
    pub(super) async fn handle_power_intent(&self, node: Node) -> Result<Next, ConductorError> {
        let Some(node) = self.lock(&node.uuid, |n| n.power_intent.is_some()).await? else {
            return Ok(Next::Idle);
        };
        let Some(intent) = node.power_intent.clone() else {
            return Ok(Next::Idle);
        };
        let result = match PowerAction::parse(&intent.target) {
            Some(action) => self.set_power(&node, action).await.map(|()| action),
            None => Err(crate::power::PowerError::Unsupported(format!(
                "unknown power target {}",
                intent.target
            ))),
        };
        let target = intent.target.clone();
        match result {
            Ok(action) => {
                info!(node = %node.uuid, target = %target, "power state changed");
                let state = action.resulting_state().as_str().to_owned();
                self.release(&node.uuid, move |n| {
                    n.power_state = Some(state.clone());
                    n.target_power_state = None;
                    n.power_intent = None;
                })
                .await?;
            }
            Err(e) => {
                let msg =
                    format!("Failed to change power state to '{target}' by '{target}'. Error: {e}");
                self.release(&node.uuid, move |n| {
                    n.target_power_state = None;
                    n.power_intent = None;
                    n.last_error = Some(msg.clone());
                })
                .await?;
            }
        }
        Ok(Next::Again)
    }
}
