fn main() -> std::process::ExitCode {
    common::service::main(
        common::settings::Domain::Alarm,
        &alarm_service::store::MIGRATIONS,
        alarm_service::startup::build,
    )
}
