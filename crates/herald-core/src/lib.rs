//! Herald's core: domain types, ports, the error catalogue and the commands. No IO lives here;
//! adapters implement the ports and transports call the commands.

#[macro_use]
mod macros;

pub mod accounts;
pub mod apikey;
pub mod auth;
pub mod body;
pub mod broker;
pub mod calendar;
pub mod caller;
pub mod campaign;
pub mod change;
pub mod clock;
pub mod command;
pub mod command_group;
pub mod commands;
pub mod delivery;
pub mod error;
pub mod files;
pub mod forward;
pub mod health;
pub mod herald;
pub mod hosting;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod new_account;
pub mod notice;
pub mod notify;
pub mod oidc;
pub mod page;
pub mod quarantine;
pub mod realtime;
pub mod redact;
pub mod room;
pub mod schedule;
pub mod schema;
pub mod services;
pub mod shapes;
pub mod slots;
pub mod store;
pub mod store_error;
pub mod stream;
pub mod task;
pub mod throttle;
pub mod timeline;
pub mod trace;
pub mod user;
pub mod webhook;
pub mod wire;

pub use herald::Herald;
pub use services::Services;
