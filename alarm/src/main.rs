// The service of the domain that owns the alarm kind.
fn main() -> std::process::ExitCode {
    common::service::main(
        <common::entity::Alarm as common::entity::Entity>::OWNER,
        &alarm_service::store::MIGRATIONS,
        alarm_service::startup::build,
    )
}
