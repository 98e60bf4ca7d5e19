// The service of the domain that owns the user kind.
#[global_allocator]
static GLOBAL: common::Allocator = common::Allocator;

fn main() -> std::process::ExitCode {
    common::service::main(
        <user_kind::KnownUser as common::entity::Entity>::OWNER,
        &user_service::store::MIGRATIONS,
        user_service::startup::build,
    )
}
