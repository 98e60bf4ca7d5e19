//! Deterministic row generators for the `item`, `user` and `alarm` tables.

use crate::rng::SplitMix64;
use crate::words::{
    Category, BROADCASTERS, CATEGORIES, FAMILY_NAMES, GIVEN_NAMES, MODIFIERS, PROMOS, SHOW_TEMPLATES, SHOW_TOPICS, TAGS,
};

/// Stream tags, so every table uses its own independent random stream.
const TAG_ITEMS: u64 = 1;
const TAG_ITEM_SPECIAL: u64 = 2;
const TAG_USER_NAMES: u64 = 3;
const TAG_USER_TOKEN_ID: u64 = 4;
const TAG_USER_TOKEN_RAND: u64 = 5;
const TAG_ALARMS: u64 = 6;

/// Items within the first `SPECIAL_WINDOW` ids always include one item with a
/// NULL category and one with price 0.
pub const SPECIAL_WINDOW: u64 = 30;

/// Highest generated price.
pub const MAX_PRICE: u32 = 2_000_000;

/// One row of `public.item`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: u64,
    pub name: String,
    pub broadcaster: &'static str,
    pub category: Option<&'static str>,
    pub price: u32,
}

/// A product line; consecutive items are sometimes variants of the same line
/// (different size/option and price), as in a real catalogue.
#[derive(Debug, Clone)]
struct Family {
    category: &'static Category,
    broadcaster: &'static str,
    stem: String,
    base_k: u64,
    /// Option of the previous item of the line, so variants differ.
    last_option: &'static str,
}

/// Iterator over the rows of `public.item` (ids `1..=count`).
#[derive(Debug)]
pub struct ItemGen {
    rng: SplitMix64,
    next_id: u64,
    count: u64,
    null_pos: u64,
    zero_pos: u64,
    family: Option<Family>,
    weights: Vec<u32>,
}

impl ItemGen {
    pub fn new(seed: u64, count: u64) -> Self {
        let mut special = SplitMix64::stream(seed, TAG_ITEM_SPECIAL);
        let window = count.clamp(1, SPECIAL_WINDOW);
        let null_pos = 1 + special.below(window);
        let zero_pos = 1 + special.below(window);
        Self {
            rng: SplitMix64::stream(seed, TAG_ITEMS),
            next_id: 1,
            count,
            null_pos,
            zero_pos,
            family: None,
            weights: CATEGORIES.iter().map(|c| c.weight).collect(),
        }
    }

    fn show(&mut self, id: u64) -> Item {
        let rng = &mut self.rng;
        let template = rng.word(SHOW_TEMPLATES);
        let topic = rng.word(SHOW_TOPICS);
        let host = person_name(rng);
        let name = template.replace("{t}", topic).replace("{n}", &host);
        Item { id, name, broadcaster: rng.word(BROADCASTERS), category: None, price: 0 }
    }

    fn new_family(&mut self) -> Family {
        let weights = &self.weights;
        let rng = &mut self.rng;
        let category = CATEGORIES.get(rng.weighted(weights)).unwrap_or(&CATEGORIES[0]);
        let mut stem = String::new();
        match rng.below(100) {
            0..=34 => {}
            35..=59 => {
                stem.push('[');
                stem.push_str(rng.word(TAGS));
                stem.push(']');
                if rng.chance(500) {
                    stem.push(' ');
                }
            }
            60..=69 => {
                let promo = rng.word(PROMOS);
                if rng.chance(500) {
                    stem.push_str(&format!("★ {promo} ★ "));
                } else {
                    stem.push_str(&format!("★{promo}★ "));
                }
            }
            70..=79 if category.model_year => {
                stem.push_str(&format!("{}년형 ", rng.range(17, 20)));
            }
            80..=89 if category.name == "패션·잡화" => {
                let season = if rng.chance(500) { "FW" } else { "SS" };
                stem.push_str(&format!("20{} {season} ", rng.range(17, 20)));
            }
            _ => {}
        }
        stem.push_str(rng.word(category.brands));
        stem.push(' ');
        if rng.chance(300) {
            stem.push_str(rng.word(MODIFIERS));
            stem.push(' ');
        }
        stem.push_str(rng.word(category.products));
        Family {
            category,
            broadcaster: rng.word(BROADCASTERS),
            stem,
            base_k: skewed(rng, category.lo_k, category.hi_k),
            last_option: "",
        }
    }

    fn product(&mut self, id: u64, family: &mut Family, variant: bool) -> Item {
        let rng = &mut self.rng;
        let mut name = family.stem.clone();
        if variant || rng.chance(750) {
            let mut option = rng.word(family.category.options);
            for _ in 0..4 {
                if option != family.last_option {
                    break;
                }
                option = rng.word(family.category.options);
            }
            family.last_option = option;
            name.push(' ');
            expand_option(rng, option, &mut name);
        }
        let k = if variant {
            // Variants cost 80%..130% of the line's base price.
            (family.base_k * rng.range(80, 130) / 100).max(1)
        } else {
            family.base_k
        };
        let price = if rng.chance(10) { 0 } else { price_from_thousands(rng, k) };
        Item { id, name, broadcaster: family.broadcaster, category: Some(family.category.name), price }
    }
}

impl Iterator for ItemGen {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.next_id > self.count {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        if id == self.null_pos || self.rng.chance(20) {
            self.family = None;
            return Some(self.show(id));
        }
        let (mut family, variant) = match self.family.take() {
            Some(f) if self.rng.chance(250) => (f, true),
            _ => (self.new_family(), false),
        };
        let mut item = self.product(id, &mut family, variant);
        self.family = Some(family);
        if id == self.zero_pos {
            item.price = 0;
        }
        Some(item)
    }
}

/// Price in thousands of won in `lo..=hi`, skewed towards the cheap end.
fn skewed(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    let span = hi.saturating_sub(lo) + 1;
    lo + rng.below(span) * rng.below(span) / span
}

/// Catalogue-style price (`79,900`, `88,000`, `336,400`...): a multiple of 100
/// in `100..=MAX_PRICE`.
fn price_from_thousands(rng: &mut SplitMix64, k: u64) -> u32 {
    let won = k * 1000;
    let price = match rng.below(100) {
        0..=54 => won.saturating_sub(100),
        55..=89 => won,
        _ => won.saturating_sub(100 * rng.range(1, 9)),
    };
    price.clamp(100, u64::from(MAX_PRICE)) as u32
}

/// Appends `option` with `#` replaced by a small count.
fn expand_option(rng: &mut SplitMix64, option: &str, out: &mut String) {
    for c in option.chars() {
        match c {
            '#' => out.push_str(&rng.range(2, 6).to_string()),
            c => out.push(c),
        }
    }
}

/// A Korean person name: family name plus a two-syllable given name.
fn person_name(rng: &mut SplitMix64) -> String {
    let weights: [u32; FAMILY_NAMES.len()] = {
        let mut w = [0u32; FAMILY_NAMES.len()];
        for (slot, (_, weight)) in w.iter_mut().zip(FAMILY_NAMES) {
            *slot = *weight;
        }
        w
    };
    let family = FAMILY_NAMES.get(rng.weighted(&weights)).map_or("김", |f| f.0);
    let mut name = String::with_capacity(9);
    name.push_str(family);
    name.push_str(rng.word(GIVEN_NAMES));
    name
}

/// One row of `public."user"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub access_token: String,
}

/// Iterator over the rows of `public."user"` (ids `1..=count`).
#[derive(Debug)]
pub struct UserGen {
    names: SplitMix64,
    token_id: SplitMix64,
    token_rand: SplitMix64,
    next_id: u64,
    count: u64,
}

impl UserGen {
    pub fn new(seed: u64, count: u64) -> Self {
        Self {
            names: SplitMix64::stream(seed, TAG_USER_NAMES),
            token_id: SplitMix64::stream(seed, TAG_USER_TOKEN_ID),
            token_rand: SplitMix64::stream(seed, TAG_USER_TOKEN_RAND),
            next_id: 1,
            count,
        }
    }
}

impl Iterator for UserGen {
    type Item = User;

    fn next(&mut self) -> Option<User> {
        if self.next_id > self.count {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        // One output of a single SplitMix64 stream per user: all distinct,
        // and all 64 bits are embedded in the token, so tokens are unique.
        let unique = self.token_id.next_u64();
        let random = self.token_rand.next_u64();
        Some(User { id, name: person_name(&mut self.names), access_token: uuid_v4(unique, random) })
    }
}

/// Formats a version-4/variant-1 UUID that embeds all 64 bits of `unique`
/// (so distinct `unique` values give distinct UUIDs) plus 58 bits of `random`.
pub fn uuid_v4(unique: u64, random: u64) -> String {
    let time_low = unique >> 32;
    let time_mid = (unique >> 16) & 0xffff;
    let time_hi_version = 0x4000 | ((unique >> 4) & 0x0fff);
    let clock_seq = 0x8000 | ((unique & 0xf) << 10) | ((random >> 54) & 0x03ff);
    let node = random & 0xffff_ffff_ffff;
    format!("{time_low:08x}-{time_mid:04x}-{time_hi_version:04x}-{clock_seq:04x}-{node:012x}")
}

/// One row of `public.alarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    pub id: u64,
    pub item_id: u64,
    pub user_id: u64,
    /// Microseconds since 1970-01-01 00:00:00.
    pub created_us: u64,
}

/// First possible `alarm.created`: 2020-06-01 00:00:00.
pub const ALARM_START_US: u64 = 18_414 * DAY_US;
/// Length of the `alarm.created` window: 183 days (until 2020-12-01).
pub const ALARM_SPAN_US: u64 = 183 * DAY_US;
const DAY_US: u64 = 86_400 * 1_000_000;

/// Iterator over the rows of `public.alarm`.
///
/// Alarms are grouped by user. Every user gets roughly `alarms / users`
/// alarms (neighbouring users trade a random amount to add variance) and picks
/// them as distinct items of an affine permutation `(a*j + b) mod items` with
/// `gcd(a, items) == 1`. Pairs are therefore unique without any set, and
/// memory use is constant. Requires `alarms <= items * users`.
#[derive(Debug)]
pub struct AlarmGen {
    rng: SplitMix64,
    items: u64,
    users: u64,
    alarms: u64,
    next_id: u64,
    /// 0-based index of the user currently emitting alarms.
    user: u64,
    /// 0-based index of the next user to start.
    next_user: u64,
    /// Alarm count of the next user of the current pair (if any).
    pending: Option<u64>,
    /// Remaining alarms of the current user and its permutation.
    left: u64,
    j: u64,
    a: u64,
    b: u64,
}

impl AlarmGen {
    /// `alarms` is clamped to `items * users` (the number of distinct pairs).
    pub fn new(seed: u64, items: u64, users: u64, alarms: u64) -> Self {
        let max = u128::from(items) * u128::from(users);
        let alarms = u64::try_from(max.min(u128::from(alarms))).unwrap_or(alarms);
        Self {
            rng: SplitMix64::stream(seed, TAG_ALARMS),
            items,
            users,
            alarms,
            next_id: 1,
            user: 0,
            next_user: 0,
            pending: None,
            left: 0,
            j: 0,
            a: 1,
            b: 0,
        }
    }

    /// Even share of alarms for 0-based user `u`; at most `ceil(K/M) <= N`.
    fn share(&self, u: u64) -> u64 {
        let k = u128::from(self.alarms);
        let m = u128::from(self.users);
        let hi = k * u128::from(u + 1) / m;
        let lo = k * u128::from(u) / m;
        (hi - lo) as u64
    }

    /// Moves to the next user and sets up its count and permutation.
    fn start_user(&mut self) {
        self.user = self.next_user;
        self.next_user += 1;
        let count = if let Some(c) = self.pending.take() {
            c
        } else if self.user + 1 < self.users {
            let c0 = self.share(self.user);
            let c1 = self.share(self.user + 1);
            let to_first = c1.min(self.items - c0);
            let to_second = c0.min(self.items - c1);
            let t = self.rng.range(0, to_first + to_second);
            // c0 + t - to_second, c1 - t + to_second; both stay in 0..=items.
            self.pending = Some(c1 + to_second - t);
            c0 + t - to_second
        } else {
            self.share(self.user)
        };
        self.left = count;
        self.j = 0;
        self.a = coprime_multiplier(&mut self.rng, self.items);
        self.b = self.rng.below(self.items);
    }
}

/// Random `a` in `1..n` with `gcd(a, n) == 1` (1 as a fallback / for `n <= 2`).
fn coprime_multiplier(rng: &mut SplitMix64, n: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    for _ in 0..64 {
        let a = rng.range(1, n - 1);
        if gcd(a, n) == 1 {
            return a;
        }
    }
    1
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Iterator for AlarmGen {
    type Item = Alarm;

    fn next(&mut self) -> Option<Alarm> {
        if self.next_id > self.alarms {
            return None;
        }
        while self.left == 0 {
            if self.next_user >= self.users {
                return None; // unreachable while counts sum to `alarms`
            }
            self.start_user();
        }
        let item = (self.a * self.j + self.b) % self.items;
        self.j += 1;
        self.left -= 1;
        let id = self.next_id;
        self.next_id += 1;
        Some(Alarm {
            id,
            item_id: item + 1,
            user_id: self.user + 1,
            created_us: ALARM_START_US + self.rng.below(ALARM_SPAN_US),
        })
    }
}

/// Calendar date `(year, month, day)` of a day number since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, non-negative days only).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// PostgreSQL text output of a `timestamp without time zone` given as
/// microseconds since the epoch, e.g. `2020-06-01 12:34:56.1234` (trailing
/// zeros of the fraction are dropped, the fraction is omitted when zero).
pub fn format_timestamp(us: u64) -> String {
    let (y, mo, d) = civil_from_days(us / DAY_US);
    let in_day = us % DAY_US;
    let secs = in_day / 1_000_000;
    let frac = in_day % 1_000_000;
    let mut s = format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(ALARM_START_US), "2020-06-01 00:00:00");
        assert_eq!(format_timestamp(ALARM_START_US + 45_296_123_456), "2020-06-01 12:34:56.123456");
        assert_eq!(format_timestamp(ALARM_START_US + 45_296_120_000), "2020-06-01 12:34:56.12");
        assert_eq!(format_timestamp(ALARM_START_US + ALARM_SPAN_US - 1), "2020-11-30 23:59:59.999999");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(18_321), (2020, 2, 29));
    }

    #[test]
    fn uuid_format() {
        let u = uuid_v4(0x0123_4567_89ab_cdef, u64::MAX);
        assert_eq!(u, "01234567-89ab-4cde-bfff-ffffffffffff");
        let u = uuid_v4(0, 0);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn items_are_catalogue_like() {
        let items: Vec<Item> = ItemGen::new(42, 5000).collect();
        assert_eq!(items.len(), 5000);
        for (i, it) in items.iter().enumerate() {
            assert_eq!(it.id, i as u64 + 1);
            assert!(it.price <= MAX_PRICE && it.price.is_multiple_of(100));
            assert!(BROADCASTERS.contains(&it.broadcaster));
            assert!(!it.name.is_empty());
        }
        let nulls = items.iter().filter(|i| i.category.is_none()).count();
        let zeros = items.iter().filter(|i| i.price == 0).count();
        assert!((50..=200).contains(&nulls), "{nulls} NULL categories");
        assert!((90..=250).contains(&zeros), "{zeros} zero prices");
    }

    #[test]
    fn specials_in_first_window_for_any_seed() {
        for seed in 0..200 {
            for n in [1, 2, 5, 30, 100] {
                let items: Vec<Item> = ItemGen::new(seed, n).collect();
                let w = &items[..items.len().min(SPECIAL_WINDOW as usize)];
                assert!(w.iter().any(|i| i.category.is_none()), "seed {seed} n {n}");
                assert!(w.iter().any(|i| i.price == 0), "seed {seed} n {n}");
            }
        }
    }

    #[test]
    fn tokens_unique_and_v4() {
        let mut seen = HashSet::new();
        for u in UserGen::new(7, 20_000) {
            let t = u.access_token.as_bytes();
            assert_eq!(t.len(), 36);
            assert_eq!(t[14], b'4');
            assert!(matches!(t[19], b'8' | b'9' | b'a' | b'b'));
            assert!(u.name.chars().count() == 3);
            assert!(seen.insert(u.access_token));
        }
    }

    fn check_alarms(items: u64, users: u64, alarms: u64) {
        let mut seen = HashSet::new();
        let mut n = 0;
        for (i, a) in AlarmGen::new(9, items, users, alarms).enumerate() {
            assert_eq!(a.id, i as u64 + 1);
            assert!((1..=items).contains(&a.item_id));
            assert!((1..=users).contains(&a.user_id));
            assert!(a.created_us >= ALARM_START_US);
            assert!(a.created_us < ALARM_START_US + ALARM_SPAN_US);
            assert!(seen.insert((a.user_id, a.item_id)), "duplicate pair");
            n += 1;
        }
        assert_eq!(n, alarms, "items {items} users {users}");
    }

    #[test]
    fn alarm_pairs_unique_and_counted() {
        check_alarms(1, 1, 0);
        check_alarms(1, 1, 1);
        check_alarms(5, 1, 5);
        check_alarms(1, 7, 7);
        check_alarms(6, 4, 24); // every pair
        check_alarms(7, 5, 34);
        check_alarms(100, 50, 1234);
        check_alarms(64, 33, 64 * 33 - 1);
        check_alarms(1000, 3, 5);
        check_alarms(3, 1000, 2000);
    }
}
