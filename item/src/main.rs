// The service of the domain that owns the item kind.
fn main() -> std::process::ExitCode {
    common::service::main(
        <common::entity::Item as common::entity::Entity>::OWNER,
        &item_service::store::MIGRATIONS,
        item_service::startup::build,
    )
}
