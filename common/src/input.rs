//! Checked client input: item ids from paths and bodies.

use serde_json::Value;

use crate::error::ApiError;

/// An item id as the client sent it, checked to be an integer of the `bigint` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemId(pub i64);

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl ItemId {
    /// From a path segment: `/50` → 50; anything but an integer is a 400.
    pub fn from_path(segment: &str) -> Result<ItemId, ApiError> {
        if !is_integer_text(segment) {
            return Err(ApiError::BadRequest(format!("item id must be an integer, got {:?}", shorten(segment))));
        }
        segment
            .parse::<i64>()
            .map(ItemId)
            .map_err(|_| ApiError::BadRequest("item id is out of range for a 64-bit integer".into()))
    }

    /// From the `item_id` field of a JSON body: a number (`50`) or a string of digits (`"50"`).
    pub fn from_body(body: &serde_json::Map<String, Value>) -> Result<ItemId, ApiError> {
        match body.get("item_id") {
            None => Err(ApiError::BadRequest("item_id is missing from the request body".into())),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(id) => Ok(ItemId(id)),
                None if n.is_f64() => Err(ApiError::BadRequest(format!("item_id must be an integer, got {n}"))),
                None => Err(ApiError::BadRequest("item_id is out of range for a 64-bit integer".into())),
            },
            Some(Value::String(s)) if is_integer_text(s) => s
                .parse::<i64>()
                .map(ItemId)
                .map_err(|_| ApiError::BadRequest("item_id is out of range for a 64-bit integer".into())),
            Some(Value::String(s)) => Err(ApiError::BadRequest(format!(
                "item_id must be a number or a string of digits, got {:?}",
                shorten(s)
            ))),
            Some(other) => Err(ApiError::BadRequest(format!(
                "item_id must be a number or a string of digits, got {}",
                kind(other)
            ))),
        }
    }
}

/// `?limit=&offset=` from a query string: non-negative integers; anything else is a 400.
/// `?limit=&offset=` of a list; absent means the whole list, as the contract asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<usize>,
    pub offset: usize,
}

pub fn parse_page(query: &str) -> Result<Page, ApiError> {
    let mut page = Page::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a non-negative integer, got {:?}", shorten(value)))
            })
        };
        match key {
            "limit" => page.limit = Some(number()?),
            "offset" => page.offset = number()?,
            _ => {} // other parameters are ignored, as servers usually do
        }
    }
    Ok(page)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Echoes at most 40 characters of client input in a hint.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Result<ItemId, ApiError> {
        match v {
            Value::Object(m) => ItemId::from_body(&m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn path_ids_must_be_integers() {
        assert_eq!(ItemId::from_path("50").unwrap(), ItemId(50));
        assert_eq!(ItemId::from_path("-3").unwrap(), ItemId(-3));
        for bad in ["abc", "", "1.5", "+5", " 5", "5a", "-", "99999999999999999999", "１"] {
            assert!(matches!(ItemId::from_path(bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }

    #[test]
    fn body_ids_may_be_numbers_or_digit_strings() {
        assert_eq!(body(json!({"item_id": 50})).unwrap(), ItemId(50));
        assert_eq!(body(json!({"item_id": "50"})).unwrap(), ItemId(50));
        for bad in [
            json!({}),
            json!({"item_id": null}),
            json!({"item_id": 1.5}),
            json!({"item_id": 50.0}),
            json!({"item_id": [50]}),
            json!({"item_id": {"id": 50}}),
            json!({"item_id": true}),
            json!({"item_id": "5O"}),
            json!({"item_id": ""}),
            json!({"item_id": 18446744073709551615u64}),
            json!({"item_id": "99999999999999999999"}),
            json!({"item_id": "1; DROP TABLE alarm"}),
        ] {
            assert!(matches!(body(bad.clone()), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn paging_parameters_are_checked() {
        assert_eq!(parse_page("").unwrap(), Page::default());
        assert_eq!(parse_page("limit=10&offset=20").unwrap(), Page { limit: Some(10), offset: 20 });
        assert_eq!(parse_page("x=1&offset=3").unwrap(), Page { limit: None, offset: 3 });
        for bad in ["limit=-1", "limit=abc", "offset=", "limit=1.5", "offset=99999999999999999999999"] {
            assert!(matches!(parse_page(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn hints_do_not_echo_long_input() {
        let long = "x".repeat(10_000);
        let e = ItemId::from_path(&long).unwrap_err();
        assert!(e.to_string().len() < 200);
    }
}
