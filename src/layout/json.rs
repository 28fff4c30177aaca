//! JSON text the way ToolJet writes it: `JSON.stringify(value, null, 2)`, no trailing newline.

use serde::Serialize;
use serde_json::ser::{PrettyFormatter, Serializer};
use serde_json::Value;

/// Pretty prints like `JSON.stringify(value, null, 2)`, so files we write diff cleanly against
/// files ToolJet writes.
///
/// Key order is kept (serde_json's `preserve_order`); strings are escaped as JavaScript does.
/// Floats are printed by serde_json's shortest round-trip form, which can differ from
/// JavaScript's for exponents (`1e21` vs `1e+21`) and for values such as `1.0` parsed as floats;
/// exports produced by ToolJet contain integers and plain decimals, which print identically.
pub fn to_tooljet_json(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(b"  "));
    value.serialize(&mut serializer)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_json_stringify_with_two_spaces() {
        let value = json!({
            "b": 1,
            "a": [1, "x", null, true, {}, []],
            "nested": {"empty": {}, "list": [], "text": "tab\there \"q\" \u{1} é /"}
        });
        let text = String::from_utf8(to_tooljet_json(&value).unwrap()).unwrap();
        // What node prints for JSON.stringify(value, null, 2).
        let expected = "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    \"x\",\n    null,\n    true,\n    {},\n    []\n  ],\n  \"nested\": {\n    \"empty\": {},\n    \"list\": [],\n    \"text\": \"tab\\there \\\"q\\\" \\u0001 é /\"\n  }\n}";
        assert_eq!(text, expected);
    }

    #[test]
    fn scalars_and_empty_containers() {
        assert_eq!(to_tooljet_json(&json!({})).unwrap(), b"{}");
        assert_eq!(to_tooljet_json(&json!([])).unwrap(), b"[]");
        assert_eq!(to_tooljet_json(&json!(0.5)).unwrap(), b"0.5");
        assert_eq!(to_tooljet_json(&json!(-3)).unwrap(), b"-3");
    }
}
