//! Who published a message. RabbitMQ checks the AMQP `user_id` property against the login of
//! the publishing connection and refuses a publish naming anyone else (`PRECONDITION_FAILED`,
//! unless that login has the `impersonator` tag), so `user_id` is the one part of a message a
//! publisher cannot choose freely. Every publish of ours sets it ([`Identity::stamp`]); every
//! consumer accepts a domain's messages only with that domain owner's login
//! ([`Identity::owner`]), and so does the RPC client with answers (docs/security.md).

use lapin::BasicProperties;

use crate::{
    error::Error,
    settings::{Domain, Settings},
};

/// This service's own broker login and the login of each domain's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    own: String,
    /// Indexed like [`Domain::all`].
    owners: Vec<String>,
}

/// The login a domain's service has by convention (`rabbitmq/service-users.json.in`).
pub fn conventional_login(d: Domain) -> String {
    format!("{}-service", d.name())
}

fn index(d: Domain) -> usize {
    d.index()
}

impl Identity {
    /// The identity `settings` describe (`AMQP_URL`'s login, `AMQP_OWNER_LOGINS`).
    pub fn of(settings: &Settings) -> Result<Identity, Error> {
        Identity::new(settings.domain, &Identity::login_of(&settings.amqp_urls)?, settings.amqp_owner_logins.as_deref())
    }

    /// From the login this service connects with and `AMQP_OWNER_LOGINS` (if set): either one
    /// login every domain publishes with (a development broker where all services share one
    /// user, e.g. `guest`), or `domain=login` pairs overriding the convention `<domain>-service`.
    /// Unset, and this service not logged in under its conventional name, all services are taken
    /// to share its login ([`Identity::shared`]); the service says so at start.
    pub fn new(own_domain: Domain, own: &str, owner_logins: Option<&str>) -> Result<Identity, Error> {
        let mut owners: Vec<String> = Domain::all().iter().copied().map(conventional_login).collect();
        match owner_logins.map(str::trim).filter(|v| !v.is_empty()) {
            None if own != conventional_login(own_domain) => owners = vec![own.to_string(); Domain::all().len()],
            None => {}
            Some(one) if !one.contains('=') => owners = vec![one.to_string(); Domain::all().len()],
            Some(pairs) => {
                for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (domain, login) = pair.split_once('=').map(|(d, l)| (d.trim(), l.trim())).unwrap_or(("", ""));
                    let d = Domain::named(domain).filter(|_| !login.is_empty());
                    let d = d.ok_or_else(|| {
                        let domains: Vec<&str> = Domain::all().iter().map(|d| d.name()).collect();
                        Error::Config(format!(
                            "AMQP_OWNER_LOGINS: {pair:?} is not domain=login (domains: {})",
                            domains.join(", ")
                        ))
                    })?;
                    owners[index(d)] = login.to_string();
                }
            }
        }
        let identity = Identity { own: own.to_string(), owners };
        if identity.owner(own_domain) != own {
            return Err(Error::Config(format!(
                "the {} service logs in to RabbitMQ as {own:?}, but AMQP_OWNER_LOGINS names {:?} as the {} \
                 domain's publisher: its own messages would be refused",
                own_domain.name(),
                identity.owner(own_domain),
                own_domain.name()
            )));
        }
        Ok(identity)
    }

    /// The login of the first of `urls` (`guest`, as RabbitMQ's default, when a URL names none):
    /// the nodes of a cluster share their users.
    pub fn login_of(urls: &[String]) -> Result<String, Error> {
        let Some(url) = urls.first() else { return Ok("guest".into()) };
        let uri: lapin::uri::AMQPUri =
            url.parse().map_err(|e| Error::Config(format!("AMQP_URL is not a valid amqp:// URL: {e}")))?;
        Ok(uri.authority.userinfo.username)
    }

    /// The login this service publishes as.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// The login `d`'s messages must carry.
    pub fn owner(&self, d: Domain) -> &str {
        &self.owners[index(d)]
    }

    /// Every domain publishes with one login: `user_id` then tells no service from another
    /// (only the broker's permissions on each exchange do).
    pub fn shared(&self) -> bool {
        self.owners.iter().all(|o| *o == self.owners[0])
    }

    /// `props` carrying this service's login as `user_id`.
    pub fn stamp(&self, props: BasicProperties) -> BasicProperties {
        props.with_user_id(self.own.as_str().into())
    }
}

/// The `user_id` a message carries (checked by the broker), if any.
pub fn publisher_of(props: &BasicProperties) -> Option<&str> {
    props.user_id().as_ref().map(|u| u.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_convention_unless_the_services_share_a_login_or_are_named() {
        let i = Identity::new(Domain::new("item"), "item-service", None).unwrap();
        assert_eq!(
            Domain::all().iter().map(|&d| i.owner(d).to_string()).collect::<Vec<_>>(),
            Domain::all().iter().map(|d| format!("{}-service", d.name())).collect::<Vec<_>>()
        );
        assert!(!i.shared());
        // A development broker where every service logs in as guest: all domains are guest's.
        let dev = Identity::new(Domain::new("user"), "guest", None).unwrap();
        assert_eq!(
            Domain::all().iter().map(|&d| dev.owner(d).to_string()).collect::<Vec<_>>(),
            vec!["guest"; Domain::all().len()]
        );
        assert!(dev.shared());
        let one = Identity::new(Domain::new("alarm"), "moa", Some("moa")).unwrap();
        assert!(one.shared() && one.owner(Domain::new("user")) == "moa");
        let named = Identity::new(Domain::new("alarm"), "alarms", Some("alarm=alarms, user = people")).unwrap();
        assert_eq!(
            Domain::all().iter().map(|&d| named.owner(d).to_string()).collect::<Vec<_>>(),
            Domain::all()
                .iter()
                .map(|d| match d.name() {
                    "alarm" => "alarms".to_string(),
                    "user" => "people".to_string(),
                    other => format!("{other}-service"),
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_service_whose_own_login_is_not_its_domains_publisher_does_not_start() {
        let err = Identity::new(Domain::new("item"), "guest", Some("alarm=x")).unwrap_err().to_string();
        assert!(err.contains("\"item-service\""), "{err}");
        assert!(Identity::new(Domain::new("item"), "item-service", Some("item")).is_err());
        assert!(Identity::new(Domain::new("item"), "item-service", Some("stock=x"))
            .unwrap_err()
            .to_string()
            .contains("stock"));
    }

    #[test]
    fn the_login_is_read_from_the_first_url() {
        let urls = |u: &str| vec![u.to_string(), "amqp://other:p@h2/%2f".to_string()];
        assert_eq!(Identity::login_of(&urls("amqp://item-service:s3cret@h:5672/%2f")).unwrap(), "item-service");
        assert_eq!(Identity::login_of(&urls("amqp://h:5672/%2f")).unwrap(), "guest");
        assert_eq!(Identity::login_of(&urls("amqp://a%40b:p@h/%2f")).unwrap(), "a@b");
    }

    #[test]
    fn a_stamped_message_names_this_services_login() {
        let i = Identity::new(Domain::new("user"), "user-service", None).unwrap();
        assert_eq!(publisher_of(&i.stamp(BasicProperties::default())), Some("user-service"));
        assert_eq!(publisher_of(&BasicProperties::default()), None);
    }
}
