//! What Moodle's REST server puts on the wire: PHP's `json_encode` (slashes and non-ASCII
//! escaped), the default XML format, and the error object every failure becomes, in an
//! HTTP 200.

use serde_json::Value;

/// A failed call, as Moodle reports it: `{"exception","errorcode","message"[,"debuginfo"]}`.
/// `errorcode` is absent for PHP errors (`TypeError`); `debuginfo` only goes out when the
/// site has debugging on.
#[derive(Clone, Debug)]
pub struct MoodleError {
    pub exception: &'static str,
    pub errorcode: Option<String>,
    pub message: String,
    pub debuginfo: Option<String>,
}

impl MoodleError {
    /// `invalidparameter`: the reason is only in `debuginfo`.
    pub fn invalid_parameter(debuginfo: impl Into<String>) -> Self {
        Self {
            exception: "core\\exception\\invalid_parameter_exception",
            errorcode: Some("invalidparameter".to_owned()),
            message: "Invalid parameter value detected".to_owned(),
            debuginfo: Some(debuginfo.into()),
        }
    }

    /// A `moodle_exception` with this code and localised message.
    pub fn moodle(code: &str, message: impl Into<String>) -> Self {
        Self {
            exception: "core\\exception\\moodle_exception",
            errorcode: Some(code.to_owned()),
            message: message.into(),
            debuginfo: None,
        }
    }

    /// A `MUST_EXIST` read that found nothing (class name not namespaced).
    pub fn missing_record(table: &str) -> Self {
        Self {
            exception: "dml_missing_record_exception",
            errorcode: Some("invalidrecord".to_owned()),
            message: format!("Can't find data record in database table {table}."),
            debuginfo: None,
        }
    }

    /// A `coding_exception`.
    pub fn coding(message: &str, debuginfo: String) -> Self {
        Self {
            exception: "core\\exception\\coding_exception",
            errorcode: Some("codingerror".to_owned()),
            message: format!("Coding error detected, it must be fixed by a programmer: {message}"),
            debuginfo: Some(debuginfo),
        }
    }

    /// A PHP error escaping the function: no errorcode, no debuginfo.
    pub fn php(exception: &'static str, message: String) -> Self {
        Self { exception, errorcode: None, message, debuginfo: None }
    }

    /// A function that exists but is not in the token's service.
    pub fn access() -> Self {
        Self {
            exception: "webservice_access_exception",
            errorcode: Some("accessexception".to_owned()),
            message: "Access control exception".to_owned(),
            debuginfo: None,
        }
    }

    /// The fields as sent (in Moodle's order), `debuginfo` only with `debug`.
    fn fields(&self, debug: bool) -> Vec<(&'static str, String)> {
        let mut fields = vec![("exception", self.exception.to_owned())];
        if let Some(code) = &self.errorcode {
            fields.push(("errorcode", code.clone()));
        }
        fields.push(("message", self.message.clone()));
        if let Some(info) = self.debuginfo.as_ref().filter(|_| debug) {
            fields.push(("debuginfo", info.clone()));
        }
        fields
    }
}

/// PHP's `json_encode` escapes `/` and every non-ASCII character; serde_json does neither.
fn php_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// A success body in JSON.
pub fn json(body: &Value) -> String {
    php_escape(&body.to_string())
}

/// An error body in JSON, fields in Moodle's order.
pub fn error_json(error: &MoodleError, debug: bool) -> String {
    let fields: Vec<String> =
        error.fields(debug).into_iter().map(|(k, v)| format!("\"{k}\":{}", Value::String(v))).collect();
    php_escape(&format!("{{{}}}", fields.join(",")))
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn xml_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<VALUE null=\"null\"/>\n"),
        Value::Bool(b) => out.push_str(&format!("<VALUE>{}</VALUE>\n", u8::from(*b))),
        Value::Number(n) => out.push_str(&format!("<VALUE>{n}</VALUE>\n")),
        Value::String(s) => out.push_str(&format!("<VALUE>{}</VALUE>\n", escape_xml(s))),
        Value::Array(items) => {
            out.push_str("<MULTIPLE>\n");
            for item in items {
                xml_value(item, out);
            }
            out.push_str("</MULTIPLE>\n");
        }
        Value::Object(map) => {
            out.push_str("<SINGLE>\n");
            for (k, v) in map {
                out.push_str(&format!("<KEY name=\"{}\">", escape_xml(k)));
                xml_value(v, out);
                out.push_str("</KEY>\n");
            }
            out.push_str("</SINGLE>\n");
        }
    }
}

const XML_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n";

/// A success body in Moodle's default XML format (`null` is an empty `RESPONSE`).
pub fn xml(body: &Value) -> String {
    let mut out = format!("{XML_HEAD}<RESPONSE>\n");
    if !body.is_null() {
        xml_value(body, &mut out);
    }
    out.push_str("</RESPONSE>\n");
    out
}

/// An error body in XML.
pub fn error_xml(error: &MoodleError, debug: bool) -> String {
    let mut out = format!("{XML_HEAD}<EXCEPTION class=\"{}\">\n", escape_xml(error.exception));
    for (k, v) in error.fields(debug).into_iter().skip(1) {
        let tag = k.to_ascii_uppercase();
        out.push_str(&format!("<{tag}>{}</{tag}>\n", escape_xml(&v)));
    }
    out.push_str("</EXCEPTION>\n");
    out
}
