//! Small things an attacker on the host or a careless default would otherwise get
//! (docs/security.md, "Smaller items"): the dead-letter replay's copies are the operator's alone.

use std::os::unix::fs::PermissionsExt;

use e2e::{env, Infra, Seed, System};
use lapin::{options::BasicPublishOptions, BasicProperties, Connection, ConnectionProperties};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_replays_copies_are_readable_by_the_operator_alone() {
    let sys =
        System::start_on(Infra::shared(), Seed::Demo, &[]).await.expect("the demo seed is part of the repository");
    // A dead letter with no origin: the replay keeps it (puts it back) and keeps its copy.
    let conn =
        Connection::connect(&sys.amqp_url(), ConnectionProperties::default()).await.expect("AMQP as the operator");
    let ch = conn.create_channel().await.expect("a channel");
    ch.basic_publish(
        "".into(),
        "dead-letters".into(),
        BasicPublishOptions::default(),
        br#"{"secret": "a token, say"}"#,
        BasicProperties::default(),
    )
    .await
    .expect("published")
    .await
    .expect("confirmed");
    let _ = conn.close(200, "done".into()).await;
    e2e::eventually(std::time::Duration::from_secs(10), "the dead letter is queued", || async {
        sys.dead_letters_now().await == 1
    })
    .await;

    let out = sys.dead_letters_script(&["replay"]);
    let spool = env().state_dir.join(format!("dead-letters-{}", sys.name));
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
    };
    assert_eq!(mode(&spool), 0o700, "the spool directory: {out}");
    let copies: Vec<_> =
        std::fs::read_dir(&spool).expect("the spool").filter_map(|e| e.ok().map(|e| e.path())).collect();
    assert_eq!(copies.len(), 1, "one replay, one file of copies: {copies:?}; {out}");
    assert_eq!(mode(&copies[0]), 0o600, "{}", copies[0].display());
    assert!(
        std::fs::read_to_string(&copies[0]).expect("readable").contains("a token, say"),
        "the copy holds the message"
    );
}
