//! Herald's integration tests, one binary: the store suite on every backend, the API over real
//! HTTP on every backend, and the HTTP edge.

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

mod api;
mod broker;
mod collector;
mod delivery;
mod edge;
mod mock_provider;
mod nats_commands;
mod relay;
mod store;
mod tasks;
