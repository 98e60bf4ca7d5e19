// The service of the domain that owns the item kind.
#[global_allocator]
static GLOBAL: common::Allocator = common::Allocator;

fn main() -> std::process::ExitCode {
    common::service::main(
        <item_kind::Item as common::entity::Entity>::OWNER,
        &item_service::store::MIGRATIONS,
        item_service::startup::build,
    )
}
