//! Which command groups a process hosts, and how it reaches a command hosted by another.
//!
//! A command's group is its name up to the first dot (`tasks` for `tasks.create`). A process runs
//! the commands of the groups it hosts ([`Hosted`], `HERALD_COMMANDS`) and hands every other
//! command to a [`Forward`] with the caller's own credential, so the host checks the caller again
//! and answers as if it had been called directly. The monolith splits by configuration, not by
//! code: every process knows every command's name, schema and route; only where it runs differs.

use std::{collections::BTreeSet, fmt, str::FromStr, sync::Arc};

use serde_json::Value;

use crate::{
    body::{Answer, Body},
    command::Ctx,
    command_group::group_of,
    commands::GROUPS,
    error::{ApiError, ErrorCode},
    forward::Forward,
};

/// The command groups a process hosts: every group (the default), or a named subset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Hosted {
    #[default]
    All,
    Only(BTreeSet<&'static str>),
}

impl Hosted {
    /// Whether this process runs `command` itself.
    pub fn hosts(&self, command: &str) -> bool {
        match self {
            Hosted::All => true,
            Hosted::Only(groups) => groups.contains(group_of(command)),
        }
    }

    /// The groups hosted, in the order of [`GROUPS`].
    pub fn groups(&self) -> Vec<&'static str> {
        GROUPS.iter().copied().filter(|g| self.hosts(g)).collect()
    }

    pub fn is_all(&self) -> bool {
        *self == Hosted::All
    }
}

impl FromStr for Hosted {
    type Err = String;

    /// `all`, or a comma-separated list of known groups (at least one).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names: Vec<&str> = s.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return Err(format!("name at least one command group ({}) or all", GROUPS.join(", ")));
        }
        if names == ["all"] {
            return Ok(Hosted::All);
        }
        let mut groups = BTreeSet::new();
        for name in names {
            let Some(group) = GROUPS.iter().find(|g| **g == name) else {
                return Err(format!("{name:?} is not a command group; the groups are {} (or all)", GROUPS.join(", ")));
            };
            groups.insert(*group);
        }
        Ok(if groups.len() == GROUPS.len() { Hosted::All } else { Hosted::Only(groups) })
    }
}

impl fmt::Display for Hosted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hosted::All => f.write_str("all"),
            Hosted::Only(_) => f.write_str(&self.groups().join(",")),
        }
    }
}

/// Where this process's commands run: the groups it hosts, and the way to the others.
#[derive(Clone, Default)]
pub struct Hosting {
    pub hosted: Hosted,
    pub forward: Option<Arc<dyn Forward>>,
}

impl fmt::Debug for Hosting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hosting").field("hosted", &self.hosted).field("forwards", &self.forward.is_some()).finish()
    }
}

impl Hosting {
    /// Runs a command this process does not host in the process that does, in a client span.
    pub(crate) async fn forward(
        &self,
        command: &str,
        cx: &Ctx,
        input: Value,
        body: Option<Body>,
    ) -> Result<Answer, ApiError> {
        let Some(forward) = &self.forward else {
            let detail = format!("the {} commands are not hosted by this process", group_of(command));
            return Err(ApiError::new(ErrorCode::Unavailable, detail));
        };
        let span = tracing::info_span!(
            target: crate::trace::TARGET,
            "command forward",
            otel.name = command,
            otel.kind = "client",
            command,
        );
        tracing::Instrument::instrument(forward.forward(command, cx, input, body), span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_print_and_decide() {
        assert_eq!("all".parse::<Hosted>(), Ok(Hosted::All));
        let some: Hosted = "tasks, events".parse().expect("known groups");
        assert!(some.hosts("tasks.create") && some.hosts("events.list"));
        assert!(!some.hosts("auth.login") && !some.hosts("rooms.create"));
        assert_eq!(some.to_string(), "tasks,events");
        assert_eq!(GROUPS.join(",").parse::<Hosted>(), Ok(Hosted::All), "every group is all");
        assert!("tasks,spaceships".parse::<Hosted>().expect_err("unknown").contains("spaceships"));
        assert!("".parse::<Hosted>().is_err() && " , ".parse::<Hosted>().is_err());
        assert!("all,tasks".parse::<Hosted>().is_err(), "all is alone or not at all");
        assert_eq!(group_of("attachments.list"), "attachments");
    }
}
