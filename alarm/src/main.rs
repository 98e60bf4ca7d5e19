// The service of the domain that owns the alarm kind.
#[global_allocator]
static GLOBAL: common::Allocator = common::Allocator;

fn main() -> std::process::ExitCode {
    common::service::main(
        <alarm_kind::Alarm as common::entity::Entity>::OWNER,
        &alarm_service::store::MIGRATIONS,
        alarm_service::startup::build,
    )
}
