// The service of the domain that owns the user kind.
fn main() -> std::process::ExitCode {
    common::service::main(
        <common::entity::KnownUser as common::entity::Entity>::OWNER,
        &user_service::store::MIGRATIONS,
        user_service::startup::build,
    )
}
