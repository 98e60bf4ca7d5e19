fn main() -> std::process::ExitCode {
    common::service::main(
        common::settings::Domain::User,
        &user_service::store::MIGRATIONS,
        user_service::startup::build,
    )
}
