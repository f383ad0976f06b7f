//! Herald's integration tests, one binary: the store suite on every backend, the API over real
//! HTTP on every backend, and the HTTP edge.

#![allow(clippy::expect_used)]

/// Runs each suite function `herald_testkit::<suite>::<name>(store, &broker, args…)` once per
/// listed module, on that module's store backend and broker; a backend that is not configured
/// skips loudly (or fails, in CI).
macro_rules! store_broker_suite {
    ($suite:ident { $($module:ident: $store:ident + $broker:ident),+ $(,)? } $tests:tt) => {
        $(store_broker_suite!(@module $suite, $module, $store, $broker, $tests);)+
    };
    (@module $suite:ident, $module:ident, $store:ident, $broker:ident, { $($name:ident $(($arg:expr))?),* $(,)? }) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let test = stringify!($name);
                let Some(db) = herald_testkit::TestStore::new(herald_testkit::Backend::$store, test).await else {
                    return;
                };
                let kind = herald_testkit::broker_suite::BrokerKind::$broker;
                let Some(broker) = herald_testkit::broker_suite::TestBroker::of(kind, test).await else { return };
                herald_testkit::$suite::$name(db.store.clone(), &broker $(, $arg)?).await;
                broker.finish().await;
                db.finish().await;
            })*
        }
    };
}

/// Runs each `async fn(&TestApp)` against a fresh app on every store backend.
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let app = herald_testkit::TestApp::start(herald_testkit::Backend::Sqlite, stringify!($name))
                    .await
                    .expect("SQLite always runs");
                super::$name(&app).await;
                app.stop().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(app) =
                    herald_testkit::TestApp::start(herald_testkit::Backend::Postgres, stringify!($name)).await
                else {
                    return;
                };
                super::$name(&app).await;
                app.stop().await;
            })*
        }
    };
}

mod admin_console;
mod api;
mod bounded_errors;
mod broker;
mod campaigns;
mod collector;
mod delivery;
mod edge;
mod egress;
mod egress_proxy;
mod email;
mod events;
mod file_modes;
mod files;
mod files_s3;
mod grpc;
mod identity;
mod long_running;
mod mock_provider;
mod nats_commands;
mod notifications;
mod openapi_conformance;
mod peer_bytes;
mod people;
mod poison;
mod poison_store;
mod realtime;
mod redis_server;
mod relay;
mod rooms;
mod security;
mod security_webhooks;
mod split;
mod sso;
mod statics;
mod store;
mod streams;
mod tasks;
mod upload_slots;
mod webhook_kit;
mod webhook_signatures;
