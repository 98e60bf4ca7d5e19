//! Black-box tests of the HTTP contract (../shared/spec/api.md) and of cross-service
//! behaviour, with the real binaries, PostgreSQL and RabbitMQ.

mod cluster;
mod compose;
mod contract;
mod crash;
mod cross_service;
mod db_roles;
mod documented;
mod epochs;
mod faults;
mod hardening;
mod history;
mod hostile;
mod instances;
mod migrations;
mod observability;
mod openapi;
mod outages;
mod partition;
mod pg_failover;
mod privilege;
mod publisher_identity;
mod read_models;
mod seed_alarms;
mod tokens;
mod user_list;
mod visits;
mod writes;

/// Runs an async test body once on the provided seed and once on the demo seed.
#[macro_export]
macro_rules! on_both_seeds {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_provided_seed() {
                super::$body(e2e::Seed::Provided).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_demo_seed() {
                super::$body(e2e::Seed::Demo).await
            }
        }
    };
}
