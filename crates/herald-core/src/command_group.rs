//! Command names: `<group>.<verb>`, the group naming the use case a command belongs to.

/// The group of a command: its name up to the first dot.
pub fn group_of(command: &str) -> &str {
    command.split_once('.').map_or(command, |(group, _)| group)
}
