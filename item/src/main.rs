fn main() -> std::process::ExitCode {
    common::service::main(
        common::settings::Domain::Item,
        &item_service::store::MIGRATIONS,
        item_service::startup::build,
    )
}
