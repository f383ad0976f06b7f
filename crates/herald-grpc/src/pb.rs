//! The generated proto messages, `CalendarService` server and client, and the descriptor set.

tonic::include_proto!("herald.calendar.v1");

/// The encoded `FileDescriptorSet` of the calendar proto and every file it imports (the
/// well-known types), as server reflection serves it.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("calendar_descriptor");
