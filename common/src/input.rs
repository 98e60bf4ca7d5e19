//! Checked client input: integers (ids) from paths and bodies, and the list page.

use serde_json::Value;

use crate::error::ApiError;

/// An integer of the `bigint` range from a path segment (`/50` → 50), or a 400 naming it as
/// `what` ("item id must be an integer, got \"abc\"").
pub fn path_integer(segment: &str, what: &str) -> Result<i64, ApiError> {
    if !is_integer_text(segment) {
        return Err(ApiError::BadRequest(format!("{what} must be an integer, got {:?}", shorten(segment))));
    }
    segment.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("{what} is out of range for a 64-bit integer")))
}

/// The integer `field` of a JSON body: a number (`50`) or a string of digits (`"50"`), as
/// clients send ids; anything else (missing, a float, null, another type) is a 400 naming it.
pub fn body_integer(body: &serde_json::Map<String, Value>, field: &str) -> Result<i64, ApiError> {
    let out_of_range = || ApiError::BadRequest(format!("{field} is out of range for a 64-bit integer"));
    match body.get(field) {
        None => Err(ApiError::BadRequest(format!("{field} is missing from the request body"))),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(id) => Ok(id),
            None if n.is_f64() => Err(ApiError::BadRequest(format!("{field} must be an integer, got {n}"))),
            None => Err(out_of_range()),
        },
        Some(Value::String(s)) if is_integer_text(s) => s.parse::<i64>().map_err(|_| out_of_range()),
        Some(Value::String(s)) => {
            Err(ApiError::BadRequest(format!("{field} must be a number or a string of digits, got {:?}", shorten(s))))
        }
        Some(other) => {
            Err(ApiError::BadRequest(format!("{field} must be a number or a string of digits, got {}", kind(other))))
        }
    }
}

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
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

    fn body(v: Value) -> Result<i64, ApiError> {
        match v {
            Value::Object(m) => body_integer(&m, "thing_id"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn path_ids_must_be_integers() {
        assert_eq!(path_integer("50", "thing id").unwrap(), 50);
        assert_eq!(path_integer("-3", "thing id").unwrap(), -3);
        for bad in ["abc", "", "1.5", "+5", " 5", "5a", "-", "99999999999999999999", "１"] {
            let e = path_integer(bad, "thing id").unwrap_err();
            assert!(matches!(&e, ApiError::BadRequest(h) if h.starts_with("thing id ")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn body_ids_may_be_numbers_or_digit_strings() {
        assert_eq!(body(json!({"thing_id": 50})).unwrap(), 50);
        assert_eq!(body(json!({"thing_id": "50"})).unwrap(), 50);
        for bad in [
            json!({}),
            json!({"other": 50}),
            json!({"thing_id": null}),
            json!({"thing_id": 1.5}),
            json!({"thing_id": 50.0}),
            json!({"thing_id": [50]}),
            json!({"thing_id": {"id": 50}}),
            json!({"thing_id": true}),
            json!({"thing_id": "5O"}),
            json!({"thing_id": ""}),
            json!({"thing_id": 18446744073709551615u64}),
            json!({"thing_id": "99999999999999999999"}),
            json!({"thing_id": "1; DROP TABLE alarm"}),
        ] {
            let e = body(bad.clone()).unwrap_err();
            assert!(matches!(&e, ApiError::BadRequest(h) if h.starts_with("thing_id ")), "{bad}: {e}");
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
        let e = path_integer(&long, "thing id").unwrap_err();
        assert!(e.to_string().len() < 200);
    }
}
